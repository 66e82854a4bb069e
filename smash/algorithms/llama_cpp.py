"""llama_cpp: the model converted to GGUF, quantized by llama.cpp, and run by llama.cpp on the CPU.

llama.cpp is the CPU reference this project measures itself against; as an algorithm it also makes a
GGUF artifact. The transformers model is written as an F32 GGUF with the ``gguf`` package's writer
(``smash.gguf_export``: Llama, Mistral without a sliding window, Qwen2), quantized with llama-cpp-python's
``llama_model_quantize`` to ``quant_type``, and served by ``smash.llama_cpp_runtime.LlamaCppModel``,
which keeps transformers' ``forward``/``generate`` contract.

Saved as one ``model-<quant_type>.gguf`` (data: llama.cpp parses it, nothing is unpickled or imported)
beside the usual JSON; the folder's tokenizer is written into it at save time, so the file also works
with llama.cpp alone. Loading builds no torch model: the GGUF is the model (``load_files``).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smash import gguf_export
from smash.algorithms.base import Algorithm, Group, Hyperparameter, SaveMode, SmashContext
from smash.artifact_files import GGUF_TYPES, gguf_file
from smash.errors import ArtifactError, LlamaCppError
from smash.registry import registry

QUANT_TYPES = GGUF_TYPES
# quant type -> llama.cpp's ``llama_ftype`` constant name in llama-cpp-python
_FTYPES = {
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
INSTALL_HINT = "install llama-cpp-python (pip install 'pruna-hub[gguf]')"


def artifact_gguf(params: Mapping[str, Any]) -> str:
    """The artifact's GGUF file name; ``quant_type`` comes from a validated config, never from a path."""
    return gguf_file(params["quant_type"])


def quantize(source: Path, dest: Path, quant_type: str, threads: int) -> None:
    import llama_cpp

    quiet = logging.getLogger("llama-cpp-python")  # what Llama(verbose=False) sets: errors only
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.ERROR)

    qparams = llama_cpp.llama_model_quantize_default_params()
    qparams.ftype = getattr(llama_cpp, _FTYPES[quant_type])
    qparams.nthread = threads
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(), qparams)
    if status != 0:
        raise LlamaCppError(f"quantize to {quant_type}", str(source), "Try F16 or Q8_0, or report the model.")


def _threads(params: Mapping[str, Any]) -> int:
    return int(params["n_threads"] or torch.get_num_threads())


def _context(params: Mapping[str, Any], config: Any) -> int:
    """``n_ctx``, but never beyond the positions the model was trained for."""
    trained = getattr(config, "max_position_embeddings", None)
    return min(int(params["n_ctx"]), int(trained)) if isinstance(trained, int) else int(params["n_ctx"])


@registry.register
class LlamaCpp(Algorithm):
    name = "llama_cpp"
    group = Group.COMPILER
    description = (
        "Converts the model to GGUF, quantizes it with llama.cpp (F32, F16, Q8_0, Q4_K_M, Q4_0) and runs "
        "forward and generate in llama.cpp; saved as a .gguf file."
    )
    devices = frozenset({"cpu"})
    hyperparameters = (
        Hyperparameter("quant_type", str, "Q8_0", "llama.cpp weight type", choices=QUANT_TYPES),
        Hyperparameter(
            "n_threads",
            int,
            None,
            "llama.cpp threads for prefill and decode; null: torch's thread count",
            minimum=1,
            maximum=1024,
            nullable=True,
        ),
        Hyperparameter(
            "n_ctx", int, 2048, "llama.cpp context: prompt + generated tokens", minimum=16, maximum=131072
        ),
    )
    runs_after = frozenset({"group:pruner"})
    incompatible_with = frozenset({"hqq", "int8_weight", "half", "torch_compile", "static_cache"})
    save_mode = SaveMode.WEIGHTS  # the weights live in the saved GGUF (``save_files``/``load_files``)

    def applies_to(self, model: nn.Module, params: Mapping[str, Any]) -> str | None:
        if importlib.util.find_spec("llama_cpp") is None:
            return f"llama-cpp-python is not installed: {INSTALL_HINT}"
        config = getattr(model, "config", None)
        if config is None:
            return "it converts transformers models (with a `config`) only"
        return gguf_export.unsupported_reason(config)

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        from smash.llama_cpp_runtime import LlamaCppModel

        work = Path(tempfile.mkdtemp(prefix="smash-gguf-"))
        floats = work / "model-F32.gguf"
        gguf_export.write_float_gguf(model, floats)
        target = work / artifact_gguf(params)
        if params["quant_type"] != "F32":
            quantize(floats, target, params["quant_type"], _threads(params))
            floats.unlink()
        smashed = LlamaCppModel(
            target,
            model.config,
            getattr(model, "generation_config", None),
            n_threads=_threads(params),
            n_ctx=_context(params, model.config),
        )
        weakref.finalize(smashed, shutil.rmtree, work, True)  # the temporary GGUF goes with the model
        ctx.metadata.update(file=target.name, gguf_bytes=target.stat().st_size)
        return smashed

    # --- the saved artifact (called by smash.model) ------------------------------------------------

    def save_files(
        self, model: nn.Module, folder: Path, params: Mapping[str, Any], ctx: SmashContext
    ) -> None:
        """Write the GGUF into ``folder``, with the tokenizer saved there when llama.cpp can read it."""
        source = Path(model.gguf_path)  # type: ignore[arg-type]
        dest = folder / artifact_gguf(params)
        if dest.exists() and dest.samefile(source):
            return
        vocab_size: Any = model.config.vocab_size  # type: ignore[union-attr]
        vocab = gguf_export.read_vocabulary(folder, int(vocab_size))
        if vocab is None:
            shutil.copyfile(source, dest)
        else:
            gguf_export.copy_with_vocabulary(source, dest, vocab)

    def load_files(self, folder: Path, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        """The model as the saved GGUF, run by llama.cpp; config files are JSON read by transformers."""
        from transformers import GenerationConfig

        from smash.architectures import read_base_config
        from smash.llama_cpp_runtime import LlamaCppModel

        path = folder / artifact_gguf(params)
        if not path.is_file():
            raise ArtifactError(
                str(folder), f"{path.name} is missing", "Re-save the model with save_pretrained."
            )
        config = read_base_config(folder)
        reason = gguf_export.unsupported_reason(config)
        if reason is not None:
            raise ArtifactError(
                str(folder), f"config.json does not describe a GGUF model: {reason}", "Re-save it."
            )
        generation = (
            GenerationConfig.from_pretrained(folder)
            if (folder / "generation_config.json").is_file()
            else None
        )
        return LlamaCppModel(
            path, config, generation, n_threads=_threads(params), n_ctx=_context(params, config)
        )
