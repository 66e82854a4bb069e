"""Skip reasons computed from what the Hub says about a model (real huggingface_hub ModelInfo objects)."""

from __future__ import annotations

from typing import Any

import pytest
from huggingface_hub.hf_api import ModelInfo

from pruna_hub.screening import SkipReason, screen

LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}


def info(**overrides: Any) -> ModelInfo:
    data: dict[str, Any] = {
        "id": "org/model",
        "sha": "a" * 40,
        "config": LLAMA_CONFIG,
        "siblings": [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"}],
        "tags": ["transformers", "llama"],
        "gated": False,
        "private": False,
        "safetensors": {"parameters": {"F32": 1000}, "total": 1000},
    }
    data.update(overrides)
    return ModelInfo(**data)


def _screen(model: ModelInfo, *, readable: bool = True, has_recipe: bool = True) -> SkipReason | None:
    skip = screen(model, readable=readable, has_recipe=has_recipe, max_parameters=10_000)
    return None if skip is None else skip.reason


def test_a_plain_model_is_smashed() -> None:
    assert _screen(info()) is None


@pytest.mark.parametrize(
    ("overrides", "readable", "has_recipe", "expected"),
    [
        ({"gated": "manual"}, False, True, SkipReason.GATED),
        ({"private": True}, False, True, SkipReason.PRIVATE),
        ({"config": None}, True, True, SkipReason.NO_CONFIG),
        ({"config": {**LLAMA_CONFIG, "auto_map": {"AutoModel": "x.Y"}}}, True, True, SkipReason.REMOTE_CODE),
        (
            {"siblings": [{"rfilename": "model.safetensors"}, {"rfilename": "modeling_custom.py"}]},
            True,
            True,
            SkipReason.REMOTE_CODE,
        ),
        (
            {"card_data": {"base_model": "meta/llama", "base_model_relation": "quantized"}},
            True,
            True,
            SkipReason.DERIVED,
        ),
        ({"card_data": {"base_model": "meta/llama"}, "tags": ["gptq"]}, True, True, SkipReason.DERIVED),
        (
            {"config": {**LLAMA_CONFIG, "quantization_config": {"quant_method": "mxfp4"}}},
            True,
            True,
            SkipReason.PREQUANTIZED,
        ),
        ({"siblings": [{"rfilename": "pytorch_model.bin"}]}, True, True, SkipReason.NO_SAFETENSORS),
        ({"safetensors": {"parameters": {"F32": 20_000}, "total": 20_000}}, True, True, SkipReason.TOO_LARGE),
        ({}, True, False, SkipReason.NO_RECIPE),
    ],
)
def test_each_skip_reason(
    overrides: dict[str, Any], readable: bool, has_recipe: bool, expected: SkipReason
) -> None:
    assert _screen(info(**overrides), readable=readable, has_recipe=has_recipe) is expected


def test_derived_means_the_card_declares_a_base_it_derives_from() -> None:
    """An original release quantized by its authors (gpt-oss: mxfp4 in its config, no base_model) is
    not a copy of another model; it is skipped as prequantized, with the method named."""
    assert _screen(info(card_data={"base_model_relation": "quantized"})) is None  # no base: not a copy
    assert _screen(info(tags=["transformers", "gptq"])) is None
    gpt_oss = info(config={**LLAMA_CONFIG, "quantization_config": {"quant_method": "mxfp4"}})
    skip = screen(gpt_oss, readable=True, has_recipe=True, max_parameters=None)
    assert skip is not None and skip.reason is SkipReason.PREQUANTIZED and "mxfp4" in skip.detail


def test_gated_but_readable_is_smashed() -> None:
    assert _screen(info(gated="auto"), readable=True) is None
