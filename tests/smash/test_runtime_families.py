"""The static-cache runtime over many transformers families: greedy tokens identical to transformers'.

Sliding-window and hybrid families (Mistral, Phi-3, Gemma 2/3, Qwen3 with sliding layers) use a window
of 16 tokens, smaller than the prompts plus generations below, so the window changes the tokens (checked
by a control); the runtime once agreed with transformers on 0.04 of their positions.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from family_models import (
    REFUSED_LAYER_TYPES,
    SLIDING_WINDOW,
    VOCAB,
    build_family_model,
    family_config,
    refused_families,
    tiny_families,
)

from smash import smash
from smash.errors import NotApplicableError, UnsupportedLayerTypesError
from smash.runtime import RuntimeSpec, attach_runtime, attached_runtime, compiled_frames

RUNTIME = {"max_cache_len": 128, "prefill_chunk": 16}
# (prompt length, new tokens), served in a row by one runtime: shorter than a chunk, several chunks and
# longer than the window, exactly one chunk, and a generation running far past the window.
REQUESTS = [(5, 12), (40, 30), (16, 3), (21, 60)]
FAMILIES = tiny_families()


def reference(model: torch.nn.Module, ids: torch.Tensor, new: int) -> torch.Tensor:
    """transformers' own greedy generate on the unsmashed model, exactly ``new`` tokens."""
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)  # type: ignore[operator]


def prompt(length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))


def assert_serves_like_transformers(base: torch.nn.Module, smashed: Callable[..., torch.Tensor]) -> None:
    for i, (length, new) in enumerate(REQUESTS):
        ids = prompt(length, seed=i)
        out = smashed(ids, max_new_tokens=new, min_new_tokens=new)
        expected = reference(base, ids, new)
        agreement = float((out == expected).float().mean()) if out.shape == expected.shape else 0.0
        assert torch.equal(out, expected), (length, new, agreement)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_runtime_generates_what_transformers_generates(family: str) -> None:
    base = FAMILIES[family](0)
    smashed = smash(base, {"static_cache": RUNTIME})
    assert_serves_like_transformers(base, smashed.generate)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_compiled_runtime_is_exact_and_never_recompiles_after_warm_up(family: str) -> None:
    base = FAMILIES[family](0)
    smashed = smash(base, {"static_cache": RUNTIME, "torch_compile": {"backend": "eager"}})
    assert smashed.metadata["torch_compile"]["warmup_frames_compiled"] == 2  # prefill + decode, whole
    before = compiled_frames()
    assert_serves_like_transformers(base, smashed.generate)
    assert compiled_frames() - before == 0


@pytest.mark.parametrize("family", ["mistral", "phi3", "gemma2", "gemma3_text", "qwen3_sliding"])
def test_the_window_changes_the_tokens(family: str) -> None:
    """Control: without its window the same model generates other tokens, so the tests above see it."""
    windowed = build_family_model(family)
    config = family_config(family)
    config.sliding_window = 10 * RUNTIME["max_cache_len"]  # wider than any request: full attention
    torch.manual_seed(0)
    unwindowed = type(windowed)(config).eval()
    assert windowed.config.sliding_window == SLIDING_WINDOW
    ids = prompt(40, seed=1)
    assert not torch.equal(reference(windowed, ids, 30), reference(unwindowed, ids, 30))


def test_sliding_layers_are_cached_at_full_length() -> None:
    """transformers' StaticSlidingWindowLayer keeps a Python-int length that a rewind over padding missed."""
    from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer

    runtime = attached_runtime(smash(FAMILIES["gemma2"](0), {"static_cache": RUNTIME}).model)
    assert runtime is not None
    assert all(type(layer) is StaticLayer for layer in runtime.cache.layers)
    assert not any(isinstance(layer, StaticSlidingWindowLayer) for layer in runtime.cache.layers)
    assert {layer.max_cache_len for layer in runtime.cache.layers} == {RUNTIME["max_cache_len"]}


@pytest.mark.parametrize("family", list(refused_families()))
def test_unsupported_layer_types_are_refused_by_name(family: str) -> None:
    """Layer types without an exact cache here are refused at smash time (and by the runtime itself, as a
    load would build it), never served with wrong tokens."""
    model, layer_type = refused_families()[family](0), REFUSED_LAYER_TYPES[family]
    with pytest.raises(UnsupportedLayerTypesError, match=rf"has {layer_type} layers") as caught:
        smash(model, {"static_cache": RUNTIME})
    assert isinstance(caught.value, NotApplicableError)
    assert caught.value.layer_types == (layer_type,) and caught.value.algorithm == "static_cache"
    with pytest.raises(UnsupportedLayerTypesError):
        attach_runtime(model, RuntimeSpec(128, 1, 16))
