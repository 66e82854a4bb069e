"""Timed generation: a greedy loop around ``forward``, the static-cache runtime's own graphs, or ``generate``.

Both time the same thing: time to first token (prefill, from the call until the first new token exists
on the host) and then one latency per further token. Neither adds work per step beyond reading the clock
(and, on CUDA, synchronizing so the clock sees finished kernels). The loop calls ``forward`` with a
transformers ``DynamicCache`` and takes the argmax, as ``generate`` does for greedy decoding. A model that
carries the static-cache runtime (``smash.runtime``) is timed through that runtime's prefill and decode,
since that is what its ``generate`` runs.
"""

from __future__ import annotations

import inspect
import itertools
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from smash.errors import EvaluationInputError


@dataclass(frozen=True)
class Timing:
    ttft_s: float
    step_latencies_s: tuple[float, ...]
    tokens: torch.Tensor  # (batch, generated)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def unwrap(model: Any) -> nn.Module:
    """The innermost nn.Module: through PrunaModel (``.model``) and torch.compile (``._orig_mod``)."""
    inner = model.__dict__.get("model", model) if not isinstance(model, nn.Module) else model
    while hasattr(inner, "_orig_mod") and isinstance(inner._orig_mod, nn.Module):
        inner = inner._orig_mod
    if not isinstance(inner, nn.Module):
        raise TypeError(f"expected a torch module or a PrunaModel, got {type(model).__name__}")
    return inner


def accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(unwrap(model).forward).parameters
    except (TypeError, ValueError):
        return False


def make_cache(model: Any) -> Any:
    from transformers import DynamicCache

    config: Any = unwrap(model).config
    return DynamicCache(config=config)


@torch.inference_mode()
def greedy_loop(model: Any, input_ids: torch.Tensor, new_tokens: int, device: torch.device) -> Timing:
    """Prefill, then ``new_tokens - 1`` single-token steps, each timed on its own."""
    extra: dict[str, Any] = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
    cache = make_cache(model)
    synchronize(device)
    start = time.perf_counter()
    out = model(input_ids=input_ids, past_key_values=cache, use_cache=True, **extra)
    token = out.logits[:, -1, :].argmax(-1, keepdim=True)
    synchronize(device)
    ttft = time.perf_counter() - start
    tokens = [token]
    steps: list[float] = []
    for _ in range(new_tokens - 1):
        begin = time.perf_counter()
        out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True, **extra)
        token = out.logits[:, -1, :].argmax(-1, keepdim=True)
        synchronize(device)
        steps.append(time.perf_counter() - begin)
        tokens.append(token)
    return Timing(ttft, tuple(steps), torch.cat(tokens, dim=1))


class _TimingStreamer:
    """A transformers streamer that stamps the clock each time ``generate`` hands over new tokens."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stamps: list[float] = []
        self.chunks: list[torch.Tensor] = []
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:  # generate first puts the prompt itself
            self._seen_prompt = True
            return
        synchronize(self.device)
        self.stamps.append(time.perf_counter())
        self.chunks.append(value.reshape(value.shape[0], -1) if value.dim() else value.reshape(1, 1))

    def end(self) -> None:
        pass


@torch.inference_mode()
def generate_run(model: Any, input_ids: torch.Tensor, new_tokens: int, device: torch.device) -> Timing:
    """Time the model's own ``generate`` (greedy, exactly ``new_tokens`` tokens)."""
    streamer = _TimingStreamer(device)
    generation_config = getattr(unwrap(model), "generation_config", None)
    pad = getattr(generation_config, "pad_token_id", None)
    if pad is None:
        pad = getattr(generation_config, "eos_token_id", None)
    if isinstance(pad, list):
        pad = pad[0] if pad else None
    synchronize(device)
    start = time.perf_counter()
    model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        streamer=streamer,
        pad_token_id=pad if pad is not None else 0,
    )
    stamps = streamer.stamps
    if not stamps:
        raise RuntimeError("generate produced no tokens through the streamer")
    steps = tuple(b - a for a, b in itertools.pairwise(stamps))
    tokens = torch.cat([c.reshape(input_ids.shape[0], -1) for c in streamer.chunks], dim=1)
    return Timing(stamps[0] - start, steps, tokens)


def attached_runtime(model: Any) -> Any:
    """The fixed-shape generation runtime ``static_cache`` attached to the model (smash.runtime), if any."""
    from smash.runtime import attached_runtime as find

    return find(unwrap(model))


@torch.inference_mode()
def runtime_run(model: Any, input_ids: torch.Tensor, new_tokens: int, device: torch.device) -> Timing:
    """Time the static-cache runtime's own prefill and decode graphs, step by step, greedily.

    The same calls its ``generate`` makes (rows padded to the cache's batch size, chunked prefill, one
    token per decode), but with the clock read around each so every step has its own latency.
    """
    runtime = attached_runtime(model)
    rows, length = input_ids.shape
    spec = runtime.spec
    if rows > spec.batch_size or length + new_tokens > spec.max_cache_len:
        raise EvaluationInputError(
            f"a batch of {rows} x ({length} prompt + {new_tokens} new) tokens does not fit the static cache "
            f"(batch_size {spec.batch_size}, max_cache_len {spec.max_cache_len})",
            "Evaluate with shorter prompt/generation lengths or smash with a larger static_cache.",
        )
    batch = torch.zeros((spec.batch_size, length), dtype=torch.long, device=device)
    batch[:rows].copy_(input_ids)
    synchronize(device)
    start = time.perf_counter()
    token = runtime.prefill(batch).argmax(-1)
    synchronize(device)
    ttft = time.perf_counter() - start
    tokens = [token[:rows]]
    steps: list[float] = []
    for step in range(new_tokens - 1):
        begin = time.perf_counter()
        token = runtime.decode(token.unsqueeze(-1), length + step).argmax(-1)
        synchronize(device)
        steps.append(time.perf_counter() - begin)
        tokens.append(token[:rows])
    return Timing(ttft, tuple(steps), torch.stack(tokens, dim=1))


@torch.inference_mode()
def forward_run(model: Any, input_ids: torch.Tensor, device: torch.device) -> Timing:
    """One timed forward pass, for models without a language-model head (no decoding)."""
    synchronize(device)
    start = time.perf_counter()
    model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    synchronize(device)
    return Timing(time.perf_counter() - start, (), input_ids[:, :0])
