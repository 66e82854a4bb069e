"""Greedy generations of smashed against base: the scores, and that they catch what next-token scores miss."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from smash import smash
from smash.evaluation import Settings
from smash.evaluation.generation import compare_generations, greedy_tokens, score
from smash.evaluation.quality import evaluate_quality
from smash.runtime import attached_runtime

SETTINGS = Settings(quality_prompts=4, quality_new_tokens=24)
RUNTIME = {"max_cache_len": 96, "prefill_chunk": 16}


@pytest.mark.parametrize(
    ("base", "smashed", "agreement", "prefix"),
    [
        ((1, 2, 3, 4), (1, 2, 3, 4), 1.0, 1.0),
        ((1, 2, 3, 4), (1, 2, 9, 4), 0.75, 0.5),  # agreement counts the re-converged position
        ((1, 2), (1, 2, 3, 4), 0.5, 0.5),  # one stopped early: its missing positions disagree
        ((5, 6, 7, 8), (9, 6, 7, 8), 0.75, 0.0),
    ],
)
def test_scores_count_positions_and_the_first_difference(
    base: tuple[int, ...], smashed: tuple[int, ...], agreement: float, prefix: float
) -> None:
    assert score(base, smashed) == (agreement, prefix)


def test_a_lossless_runtime_generates_exactly_what_transformers_generates(
    tiny_llama: torch.nn.Module,
) -> None:
    smashed = smash(tiny_llama, {"static_cache": RUNTIME, "torch_compile": {"backend": "eager"}})
    quality = evaluate_quality(tiny_llama, smashed, SETTINGS)
    assert quality.generation_exact == 1.0
    assert quality.generation_agreement == 1.0 and quality.generation_prefix == 1.0
    assert quality.generation_new_tokens == 24


def test_a_runtime_that_decodes_at_wrong_positions_fails_generation_but_not_top1(
    make_tiny_llama: Callable[..., torch.nn.Module],
) -> None:
    """The failure next-token scores cannot see (a cache whose positions drift, as a sliding-window
    cache's unrewound counter did): teacher-forced forwards are untouched, generate is wrong. Untied: a
    tied random model mostly repeats its input token, whatever the position."""
    base = make_tiny_llama(seed=0, tie_word_embeddings=False)
    smashed = smash(base, {"static_cache": RUNTIME})
    runtime = attached_runtime(smashed.model)
    assert runtime is not None
    decode = runtime.decode
    runtime.decode = lambda token, position: decode(token, position + 3)  # type: ignore[method-assign]
    quality = evaluate_quality(base, smashed, SETTINGS)
    assert quality.top1_agreement == 1.0 and quality.kl_mean == pytest.approx(0.0, abs=1e-9)
    assert quality.generation_exact is not None and quality.generation_exact < 1.0
    assert quality.generation_prefix is not None and quality.generation_prefix < 1.0


def test_a_different_model_generates_differently(make_tiny_llama: Callable[..., torch.nn.Module]) -> None:
    base, other = make_tiny_llama(seed=1), make_tiny_llama(seed=2, tie_word_embeddings=False)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8]]
    comparison = compare_generations(base, other, prompts, 16)
    assert comparison.prompts == 2 and comparison.new_tokens == 16
    assert comparison.exact_fraction == 0.0 and comparison.token_agreement < 0.5
    assert comparison.base_tokens[0] == greedy_tokens(base, prompts[0], 16)
