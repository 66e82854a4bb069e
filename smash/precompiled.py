"""Precompiled runtime graphs: dynamo's capture is saved with the model, so a load skips tracing as well.

``smash.compile_cache`` keeps inductor's output, but every new process still re-ran dynamo over the
model's Python to find the two graphs again: about 22 s of a SmolLM2 load on a 2-core CPU, for graphs
whose kernels were already on disk. torch 2.13 can capture a whole-graph function ahead of time
(``torch.compile(fn, fullgraph=True).aot_compile``) and write it to a file (``save_compiled_function``);
``torch.compiler.load_compiled_function`` brings it back without tracing. The files live in the model's
compile-cache directory (``aot/prefill.bin``, ``aot/decode.bin``), under the same key and environment
check, and are read only after that directory's seal was verified (they are pickles: loading one runs
code; see ``smash.sealed_dir``).

Guards. Dynamo's default guards pin object identities, which cannot be serialized, so the functions are
compiled with ``keep_portable_guards_unsafe``: tensor shapes, dtypes and strides, and the autograd mode.
That is sound here because the model is an argument (its weights are graph inputs, not constants), each
function is only ever called by the runtime it was captured for, on the model structure the cache key
hashes, and a function must reproduce the eager model's logits on a probe before the runtime uses it.
Anything that fails (capture, serialization, load, the probe) leaves the runtime on the in-place
compiled model, as before this module existed, and says why in the model's metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smash import compile_cache

log = logging.getLogger(__name__)

AOT_DIR = "aot"
GRAPHS = ("prefill", "decode")
# A loaded graph must match eager logits to within this fraction of their largest magnitude; a graph
# captured for other weights or another quantization is off by the order of the logits themselves.
PROBE_TOLERANCE = 1e-2
# Where layers compute in a half type (hqq's int4 kernel takes bfloat16 activations), inductor's fused
# and eager's separate roundings differ by more: 1.3% of the largest logit on SmolLM2 hqq 8-bit's decode
# step (cache 640), which refused every capture at 1e-2 and left each smash and load compiling in place.
HALF_PROBE_TOLERANCE = 5e-2
HALF_DTYPES = (torch.bfloat16, torch.float16)


def _prefill(
    model: nn.Module, ids: torch.Tensor, positions: torch.Tensor, cache: Any, keep: torch.Tensor
) -> Any:
    out = model._call_impl(
        input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=keep
    )
    return out.logits


def _decode(model: nn.Module, ids: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
    return model._call_impl(
        input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True
    ).logits


@dataclass(frozen=True)
class Graphs:
    """The runtime's two steps; ``EAGER`` is the uncompiled pair the probe compares against."""

    prefill: Callable[..., torch.Tensor]
    decode: Callable[..., torch.Tensor]


EAGER = Graphs(_prefill, _decode)


@dataclass(frozen=True)
class Outcome:
    graphs: Graphs | None
    how: str  # "loaded", "captured", or why neither


def obtain(runtime: Any, params: dict[str, Any], key: str | None) -> Outcome:
    """The runtime's precompiled graphs: loaded from the key's directory, else captured and saved there.

    Call inside ``compile_cache.compiling_into(key)`` so that inductor's kernels go to (and come from)
    the same directory.
    """
    if key is None or not compile_cache.enabled():
        return Outcome(None, "no compile cache for this backend")
    if params["mode"] != "default":
        return Outcome(None, f"mode {params['mode']!r} is compiled in place")
    folder = compile_cache.directory_for(key) / AOT_DIR
    loaded = _load(folder)
    if loaded is not None:
        if agrees_with_eager(runtime, loaded):
            return Outcome(loaded, "loaded")
        log.warning("precompiled graphs in %s disagree with the eager model; capturing them again", folder)
    try:
        captured = _capture(runtime, params)
    # dynamo raises many types (Unsupported, PackageError, ...); compiling in place still works
    except Exception as e:
        log.warning("runtime graphs not precompiled (%s: %s); compiling in place", type(e).__name__, e)
        return Outcome(None, f"capture failed: {type(e).__name__}: {_first_line(e)}")
    if not agrees_with_eager(runtime, captured):
        return Outcome(None, "captured graphs disagree with the eager model")
    _save(captured, folder)
    return Outcome(captured, "captured")


def _capture(runtime: Any, params: dict[str, Any]) -> Graphs:
    steps = {}
    for name, fn in (("prefill", _prefill), ("decode", _decode)):
        # A new options dict each time: torch.compile pops guard_filter_fn out of the one it is given.
        options: dict[str, str | int | bool | Callable[..., Any]] = {
            "guard_filter_fn": torch.compiler.keep_portable_guards_unsafe
        }
        compiled: Any = torch.compile(
            fn, backend=params["backend"], dynamic=params["dynamic"], fullgraph=True, options=options
        )
        # the autograd state and thread count the runtime calls the step under
        with torch.inference_mode(False), torch.no_grad(), runtime.threads(name):
            steps[name] = compiled.aot_compile((runtime.step_inputs(name), {}))
    return Graphs(**steps)


def _save(graphs: Graphs, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in GRAPHS:
        getattr(graphs, name).save_compiled_function(str(folder / f"{name}.bin"))  # written atomically


def _load(folder: Path) -> Graphs | None:
    if not all((folder / f"{name}.bin").is_file() for name in GRAPHS):
        return None
    steps = {}
    for name in GRAPHS:
        try:
            with (folder / f"{name}.bin").open("rb") as f:
                steps[name] = torch.compiler.load_compiled_function(f)
        except Exception as e:  # another torch build, a truncated file: capture again
            log.warning("cannot load precompiled %s graph from %s (%s); capturing it again", name, folder, e)
            return None
    return Graphs(**steps)


def probe_tolerance(model: nn.Module) -> float:
    """The probe's tolerance for ``model``: looser where any layer computes in a half type."""
    for module in model.modules():
        dtypes = [t.dtype for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))]
        compute = getattr(module, "compute_dtype", None)
        if any(d in HALF_DTYPES for d in (*dtypes, compute)):
            return HALF_PROBE_TOLERANCE
    return PROBE_TOLERANCE


def agrees_with_eager(runtime: Any, graphs: Graphs) -> bool:
    expected = runtime.probe(EAGER)
    got = runtime.probe(graphs)
    tolerance = probe_tolerance(runtime.model)
    for want, have in zip(expected, got, strict=True):
        scale = float(want.abs().max().clamp(min=1.0))
        if want.shape != have.shape or not torch.allclose(
            have.float(), want.float(), rtol=0.0, atol=tolerance * scale
        ):
            diff = float((have.float() - want.float()).abs().max()) if want.shape == have.shape else None
            log.warning("precompiled graph off by %s against eager logits of scale %.3g", diff, scale)
            return False
    return True


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]
