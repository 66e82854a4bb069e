"""smash() never returns a model whose forward crashes: a failing probe forward is a typed error."""

from __future__ import annotations

import pytest
import torch
import transformers

from smash import smash
from smash.errors import BrokenSmashedModelError


def tiny_t5() -> torch.nn.Module:
    config = transformers.T5Config(
        vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0
    )
    torch.manual_seed(0)
    return transformers.T5ForConditionalGeneration(config).eval()


@pytest.mark.parametrize("config", [{"int8_weight": {}}, {"hqq": {"weight_bits": 8}}], ids=["int8", "hqq"])
def test_t5s_feed_forward_reading_weight_is_a_typed_error_and_the_input_stays_usable(
    config: dict[str, dict[str, int]],
) -> None:
    model = tiny_t5()
    ids, start = torch.tensor([[1, 2, 3]]), torch.tensor([[0]])
    with torch.no_grad():
        before = model(input_ids=ids, decoder_input_ids=start).logits
    with pytest.raises(BrokenSmashedModelError, match=r"forward pass fails \(AttributeError.*weight") as info:
        smash(model, config)
    assert info.value.algorithms == tuple(config)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, decoder_input_ids=start).logits, before)


def test_a_vision_model_is_probed_with_pixels() -> None:
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=5,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    smashed = smash(model, {"int8_weight": {}})
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = model(pixel_values=pixels).logits.argmax(-1)
        assert torch.equal(smashed(pixel_values=pixels).logits.argmax(-1), labels)
