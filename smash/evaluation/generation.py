"""Greedy generations of the smashed model against the base's, through the paths users call.

Next-token scores on prompt positions can look fine while ``generate`` produces garbage (a cache that
forgets to rewind, a mask built for the wrong layer kind): a sliding-window model once agreed with its
base on 0.98 of teacher-forced positions and on 0.04 of generated tokens. So the smashed model is also
judged by what it generates: ``PrunaModel.generate`` (its static-cache runtime when it has one) against
transformers' own ``generate`` on the base, greedy, same prompts, same number of new tokens.

Per prompt, with ``n`` the longer of the two outputs (a run that stops early at an end-of-sequence token
counts its missing positions as disagreements):

- token agreement: positions where both produced the same token, over ``n``;
- matching prefix: how many tokens both produced before the first difference, over ``n``;
- exact: the whole outputs are equal.

Only lossless algorithms (static_cache, torch_compile) must give exact outputs; a quantized model
diverges at some point, and the matching prefix says how soon. A smashed model with a static-cache
runtime holds at most ``max_cache_len`` positions: a prompt whose prompt + new tokens would not fit gets
as many new tokens as fit, from both models alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from smash.errors import EvaluationInputError
from smash.evaluation.efficiency import model_device
from smash.evaluation.timing import unwrap


@dataclass(frozen=True)
class GenerationComparison:
    """Mean per-prompt scores over the prompt set, and the raw tokens behind them."""

    prompts: int
    new_tokens: int
    token_agreement: float
    prefix_fraction: float
    exact_fraction: float
    base_tokens: tuple[tuple[int, ...], ...]
    smashed_tokens: tuple[tuple[int, ...], ...]


def greedy_tokens(model: Any, prompt: Sequence[int], new_tokens: int) -> tuple[int, ...]:
    """The new tokens of ``model.generate`` for one prompt, greedy, stopping at end-of-sequence."""
    ids = torch.tensor([list(prompt)], device=model_device(model))
    config = getattr(unwrap(model), "generation_config", None)
    pad = getattr(config, "pad_token_id", None)
    if pad is None:
        pad = getattr(config, "eos_token_id", None)
        pad = pad[0] if isinstance(pad, list | tuple) else pad
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0 if pad is None else int(pad),
        )
    return tuple(int(t) for t in out[0, ids.shape[1] :].tolist())


def score(base: Sequence[int], smashed: Sequence[int]) -> tuple[float, float]:
    """(token agreement, matching-prefix fraction) of two generations of one prompt."""
    longest = max(len(base), len(smashed), 1)
    same = [a == b for a, b in zip(base, smashed, strict=False)]
    prefix = next((i for i, equal in enumerate(same) if not equal), len(same))
    return sum(same) / longest, prefix / longest


def room(model: Any, prompt_length: int, new_tokens: int) -> int:
    """How many of ``new_tokens`` fit after a prompt in the model's static cache (all without one)."""
    from smash.runtime import attached_runtime

    runtime = attached_runtime(unwrap(model))
    if runtime is None:
        return new_tokens
    fit = min(new_tokens, runtime.spec.max_cache_len - prompt_length)
    if fit < 1:
        raise EvaluationInputError(
            f"a quality prompt of {prompt_length} tokens does not fit the static cache of "
            f"{runtime.spec.max_cache_len} positions",
            "Raise static_cache.max_cache_len, or evaluate with fewer or shorter prompts.",
        )
    return fit


def compare_generations(
    base: Any, smashed: Any, prompts: Sequence[Sequence[int]], new_tokens: int
) -> GenerationComparison:
    """Generate ``new_tokens`` greedily from each prompt with both models and score the outputs."""
    budgets = [room(smashed, len(p), new_tokens) for p in prompts]
    base_out = [greedy_tokens(base, p, n) for p, n in zip(prompts, budgets, strict=True)]
    smashed_out = [greedy_tokens(smashed, p, n) for p, n in zip(prompts, budgets, strict=True)]
    scores = [score(b, s) for b, s in zip(base_out, smashed_out, strict=True)]
    count = max(len(scores), 1)
    return GenerationComparison(
        prompts=len(scores),
        new_tokens=new_tokens,
        token_agreement=sum(a for a, _ in scores) / count,
        prefix_fraction=sum(p for _, p in scores) / count,
        exact_fraction=sum(b == s for b, s in zip(base_out, smashed_out, strict=True)) / count,
        base_tokens=tuple(base_out),
        smashed_tokens=tuple(smashed_out),
    )
