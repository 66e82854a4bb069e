"""Speed and memory of one model: the sweep of timed runs and its summary.

``measure_efficiency`` runs the models; ``summarize_runs`` turns raw runs into the report and is pure, so
the statistics can be checked exactly on synthetic timings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from smash.algorithms.base import Group
from smash.errors import EvaluationInputError
from smash.evaluation.memory import PeakMemoryMeter
from smash.evaluation.prompts import efficiency_input_ids
from smash.evaluation.report import EfficiencyReport, RunMeasurement, SweepPoint
from smash.evaluation.settings import Settings
from smash.evaluation.stats import Stats, slope, summarize
from smash.evaluation.timing import (
    Timing,
    attached_runtime,
    forward_run,
    generate_run,
    greedy_loop,
    runtime_run,
    synchronize,
    unwrap,
)


def compile_count() -> int:
    """Frames torch._dynamo has compiled in this process so far (each a new graph or a recompile)."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"])


def has_lm_head(model: Any) -> bool:
    get = getattr(unwrap(model), "get_output_embeddings", None)
    return callable(get) and get() is not None


def owns_generation(model: Any) -> bool:
    """Whether the model's generation path differs from forward + a dynamic cache (a cacher was applied).

    A PrunaModel whose config holds an algorithm of the cacher group manages its own KV cache inside
    ``generate``; timing a hand-written loop around ``forward`` would measure something users never run.
    """
    config = model.__dict__.get("smash_config") if not isinstance(model, torch.nn.Module) else None
    if config is None:
        return False
    return any(config.registry.get(name).group is Group.CACHER for name in config)


def choose_decode_path(model: Any, settings: Settings) -> str:
    if not has_lm_head(model):
        return "forward"
    if settings.decode_path != "auto":
        return settings.decode_path
    if attached_runtime(model) is not None:
        return "runtime"
    return "generate" if owns_generation(model) else "loop"


def weight_bytes(model: Any) -> int:
    """Resident bytes of the model's tensors: parameters, buffers (kernel layouts included) and the state
    dict (quantized tensors included), each underlying storage counted once (tied weights, views). A
    model whose weights live outside torch (llama.cpp) says itself, through its ``weight_bytes()``."""
    module = unwrap(model)
    own = getattr(module, "weight_bytes", None)
    if callable(own):
        return int(own())
    tensors = [*module.parameters(), *module.buffers(), *module.state_dict().values()]
    storages: dict[int, int] = {}
    for tensor in tensors:
        if isinstance(tensor, torch.Tensor) and tensor.numel():
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def disk_bytes(path: str | os.PathLike[str] | None) -> int | None:
    if path is None:
        return None
    root = Path(path)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def model_dtype(model: Any) -> str:
    dtypes = {p.dtype for p in unwrap(model).parameters() if p.is_floating_point()}
    if not dtypes:
        return "none"
    return ",".join(sorted(str(d).removeprefix("torch.") for d in dtypes))


def model_device(model: Any) -> torch.device:
    for tensor in unwrap(model).parameters():
        return tensor.device
    return torch.device("cpu")


def measurement_device(model: Any, settings: Settings) -> torch.device:
    """Where the model's weights are; a ``settings.device`` that disagrees is an error, not a move."""
    device = model_device(model)
    if settings.device is not None and device.type != settings.device:
        raise EvaluationInputError(
            f"settings.device is {settings.device!r} but the model's weights are on {device}",
            f"Move the model with .to({settings.device!r}) first, or leave settings.device unset.",
        )
    return device


def pixel_shape(model: Any) -> tuple[int, int] | None:
    """(image side, channels) of a vision model, whose config has an image size and channels and no
    vocabulary; None for models that take token ids."""
    config = getattr(unwrap(model), "config", None)
    if isinstance(getattr(config, "vocab_size", None), int):
        return None
    size, channels = getattr(config, "image_size", None), getattr(config, "num_channels", None)
    if isinstance(size, int) and isinstance(channels, int) and size > 0 and channels > 0:
        return size, channels
    return None


def floating_dtype(model: Any) -> torch.dtype:
    """The dtype the model's first floating parameter has: what its pixel inputs must be."""
    return next((p.dtype for p in unwrap(model).parameters() if p.is_floating_point()), torch.float32)


@torch.inference_mode()
def pixel_forward_run(model: Any, pixel_values: torch.Tensor, device: torch.device) -> Timing:
    """One timed forward pass of a vision model (no decoding)."""
    synchronize(device)
    start = time.perf_counter()
    model(pixel_values=pixel_values)
    synchronize(device)
    return Timing(time.perf_counter() - start, (), pixel_values.new_zeros((pixel_values.shape[0], 0)))


def _runner(path: str, *, pixels: bool = False) -> Callable[[Any, torch.Tensor, int, torch.device], Timing]:
    if path == "forward":
        if pixels:
            return lambda model, values, _n, device: pixel_forward_run(model, values, device)
        return lambda model, ids, _n, device: forward_run(model, ids, device)
    return {"generate": generate_run, "runtime": runtime_run}.get(path, greedy_loop)


def _one_run(
    model: Any,
    run: Callable[..., Timing],
    ids: torch.Tensor,
    new_tokens: int,
    device: torch.device,
    prompt_length: int,
) -> RunMeasurement:
    before = compile_count()
    with PeakMemoryMeter(device) as meter:
        timing = run(model, ids, new_tokens, device)
    return RunMeasurement(
        prompt_length=prompt_length,
        generation_length=new_tokens,
        ttft_s=timing.ttft_s,
        step_latencies_s=timing.step_latencies_s,
        peak_increase_bytes=meter.increase_bytes,
        compilations=compile_count() - before,
    )


def efficiency_inputs(
    model: Any, settings: Settings, *, tokenizer: Any, device: torch.device
) -> dict[int, torch.Tensor]:
    """The timed inputs by prompt length: token ids of each of ``settings.prompt_lengths``, or for a
    vision model one batch of seeded pixel values, keyed (and recorded) by the image side."""
    shape = pixel_shape(model)
    if shape is not None:
        size, channels = shape
        generator = torch.Generator().manual_seed(settings.seed)
        values = torch.rand((settings.batch_size, channels, size, size), generator=generator) * 2 - 1
        return {size: values.to(device, floating_dtype(model))}
    vocab = int(getattr(unwrap(model).config, "vocab_size", 256))
    return {
        n: efficiency_input_ids(
            tokenizer, vocab, length=n, batch_size=settings.batch_size, seed=settings.seed
        ).to(device)
        for n in settings.prompt_lengths
    }


def measure_efficiency(
    model: Any,
    settings: Settings,
    *,
    label: str,
    tokenizer: Any = None,
    saved_path: str | os.PathLike[str] | None = None,
) -> EfficiencyReport:
    """Warm up at the first (prompt, generation) length, then time every length of the sweep."""
    device = measurement_device(model, settings)
    path = choose_decode_path(model, settings)
    run = _runner(path, pixels=pixel_shape(model) is not None)
    gen_lengths = (0,) if path == "forward" else settings.generation_lengths
    inputs = efficiency_inputs(model, settings, tokenizer=tokenizer, device=device)
    first = next(iter(inputs.values()))
    before = compile_count()
    for _ in range(settings.warmup_runs):
        run(model, first, gen_lengths[0], device)
    warmup_compilations = compile_count() - before
    runs = [
        _one_run(model, run, ids, g, device, p)
        for p, ids in inputs.items()
        for g in gen_lengths
        for _ in range(settings.measured_runs)
    ]
    return summarize_runs(
        runs,
        label=label,
        device=str(device),
        dtype=model_dtype(model),
        decode_path=path,
        weight_bytes=weight_bytes(model),
        disk_bytes=disk_bytes(saved_path),
        memory_method=PeakMemoryMeter(device).method,
        warmup_compilations=warmup_compilations,
        batch_size=settings.batch_size,
    )


def _peaks(runs: Sequence[RunMeasurement], weights: int) -> list[float]:
    return [float(weights + r.peak_increase_bytes) for r in runs if r.peak_increase_bytes is not None]


def _throughput(runs: Sequence[RunMeasurement], batch_size: int) -> float | None:
    steps = [s for r in runs for s in r.step_latencies_s]
    total = sum(steps)
    return len(steps) * batch_size / total if steps and total > 0 else None


def _point(runs: Sequence[RunMeasurement], weights: int, batch_size: int) -> SweepPoint:
    ttft = summarize([r.ttft_s for r in runs])
    assert ttft is not None  # a point always has runs
    return SweepPoint(
        prompt_length=runs[0].prompt_length,
        generation_length=runs[0].generation_length,
        ttft_s=ttft,
        decode_latency_s=summarize([s for r in runs for s in r.step_latencies_s]),
        peak_memory_bytes=summarize(_peaks(runs, weights)),
        decode_tokens_per_s=_throughput(runs, batch_size),
    )


def sweep_points(runs: Sequence[RunMeasurement], weights: int, batch_size: int = 1) -> tuple[SweepPoint, ...]:
    groups: dict[tuple[int, int], list[RunMeasurement]] = {}
    for r in runs:
        groups.setdefault((r.prompt_length, r.generation_length), []).append(r)
    return tuple(_point(group, weights, batch_size) for group in groups.values())


def memory_per_token(
    points: Sequence[SweepPoint], runs: Sequence[RunMeasurement]
) -> tuple[float | None, str | None]:
    """Slope of mean peak memory vs generation length at the first prompt length, else increase / tokens."""
    first = [p for p in points if p.prompt_length == points[0].prompt_length and p.peak_memory_bytes]
    if len({p.generation_length for p in first}) >= 2:
        xs = [float(p.generation_length) for p in first]
        ys = [p.peak_memory_bytes.mean for p in first if p.peak_memory_bytes is not None]
        return slope(xs, ys), "slope"
    per_token = [
        r.peak_increase_bytes / r.generation_length
        for r in runs
        if r.peak_increase_bytes is not None and r.generation_length > 0
    ]
    if not per_token:
        return None, None
    return sum(per_token) / len(per_token), "increase_per_token"


def summarize_runs(
    runs: Sequence[RunMeasurement],
    *,
    label: str,
    device: str,
    dtype: str,
    decode_path: str,
    weight_bytes: int,
    disk_bytes: int | None,
    memory_method: str,
    warmup_compilations: int,
    batch_size: int = 1,
) -> EfficiencyReport:
    """The report of a list of measured runs: pooled statistics, the sweep points, memory per token."""
    if not runs:
        raise ValueError("summarize_runs needs at least one run")
    ttft: Stats | None = summarize([r.ttft_s for r in runs])
    assert ttft is not None
    points = sweep_points(runs, weight_bytes, batch_size)
    per_token, method = memory_per_token(points, runs)
    return EfficiencyReport(
        label=label,
        device=device,
        dtype=dtype,
        decode_path=decode_path,
        weight_bytes=weight_bytes,
        disk_bytes=disk_bytes,
        ttft_s=ttft,
        decode_latency_s=summarize([s for r in runs for s in r.step_latencies_s]),
        decode_tokens_per_s=_throughput(runs, batch_size),
        peak_memory_bytes=summarize(_peaks(runs, weight_bytes)),
        memory_per_token_bytes=per_token,
        memory_per_token_method=method,
        memory_method=memory_method,
        compilations=sum(r.compilations for r in runs),
        warmup_compilations=warmup_compilations,
        points=points,
        runs=tuple(runs),
    )
