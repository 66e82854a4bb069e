"""Quality and speed of models without a language-model head: sentence encoders (pooled cosine, padding
masked out as sentence-transformers pools) and image classifiers (top-1 label agreement), on tiny
random-weight transformers models through the real evaluation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import transformers

from smash import SmashConfig, smash
from smash.evaluation import EvaluationReport, QualityReport, Settings, evaluate
from smash.evaluation.metrics import QUALITY_LABELS
from smash.evaluation.quality import encoder_batches, encoder_outputs, evaluate_quality, masked_mean

INT8 = SmashConfig({"int8_weight": {"skip_modules": ""}})


def tiny_bert(seed: int = 0) -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
    )
    torch.manual_seed(seed)
    return transformers.BertModel(config).eval()


def tiny_vit(seed: int = 0, **overrides: Any) -> torch.nn.Module:
    sizes: dict[str, Any] = {
        "image_size": 32,
        "patch_size": 8,
        "num_channels": 3,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "num_labels": 10,
    }
    config = transformers.ViTConfig(**{**sizes, **overrides})
    torch.manual_seed(seed)
    return transformers.ViTForImageClassification(config).eval()


def test_masked_mean_weights_positions_by_the_attention_mask() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mean(hidden, mask).tolist() == [[2.0, 3.0]]
    assert masked_mean(hidden, None).tolist() == [[104 / 3, 106 / 3]]
    assert masked_mean(hidden, mask).dtype == torch.float64


def test_padding_does_not_move_an_encoders_embedding() -> None:
    """Prompts of different lengths share a padded batch; each embedding equals the one it gets alone."""
    model = tiny_bert()
    settings = Settings(quality_prompts=8)
    (batch,) = encoder_batches(model, settings, None)
    mask = batch["attention_mask"]
    assert len(set(mask.sum(1).tolist())) > 1 and (mask == 0).any()  # really padded
    pooled, logits = encoder_outputs(model, batch)
    assert logits is None
    for row in range(mask.shape[0]):
        length = int(mask[row].sum())
        alone = {
            "input_ids": batch["input_ids"][row : row + 1, :length],
            "attention_mask": mask[row : row + 1, :length],
        }
        torch.testing.assert_close(encoder_outputs(model, alone)[0][0], pooled[row], rtol=1e-5, atol=1e-6)


def test_int8_encoder_is_judged_by_cosine_and_timed_by_forward() -> None:
    base = tiny_bert()
    smashed = smash(base, INT8)
    report = evaluate(
        base, smashed, settings=Settings(prompt_lengths=(16, 32), measured_runs=2, quality_prompts=12)
    )
    quality = report.quality
    assert quality is not None and quality.kind == "encoder"
    assert quality.prompts == 12 and quality.label_agreement is None
    assert quality.cosine_min is not None and 0.99 <= quality.cosine_min <= quality.cosine_mean <= 1.0 + 1e-9
    for side in (report.base, report.smashed):
        assert side.decode_path == "forward" and side.decode_latency_s is None
        assert [r.prompt_length for r in side.runs] == [16, 16, 32, 32]
        assert side.ttft_s.mean > 0
    assert report.smashed.weight_bytes < report.base.weight_bytes


def test_a_classifier_is_judged_by_top1_label_agreement() -> None:
    base = tiny_vit()
    same = evaluate_quality(base, copy.deepcopy(base), Settings(quality_prompts=20))
    assert same.kind == "classifier" and same.prompts == same.positions == 20
    assert same.label_agreement == 1.0 and same.cosine_min == pytest.approx(1.0)
    shifted = copy.deepcopy(base)
    with (
        torch.no_grad()
    ):  # every image's label moves to the next class: nothing agrees, hidden states unchanged
        shifted.classifier.weight.copy_(base.classifier.weight.roll(1, 0))
        shifted.classifier.bias.copy_(base.classifier.bias.roll(1, 0))
    moved = evaluate_quality(base, shifted, Settings(quality_prompts=20))
    assert moved.label_agreement == 0.0 and moved.cosine_min == pytest.approx(1.0)


def test_images_are_seeded_and_follow_the_config() -> None:
    base = tiny_vit(image_size=16, num_channels=1)
    first = encoder_batches(base, Settings(quality_prompts=10), None)
    again = encoder_batches(base, Settings(quality_prompts=10), None)
    other = encoder_batches(base, Settings(quality_prompts=10, seed=1), None)
    assert [b["pixel_values"].shape[0] for b in first] == [8, 2]
    assert first[0]["pixel_values"].shape[1:] == (1, 16, 16)
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0]["pixel_values"], other[0]["pixel_values"])
    assert float(first[0]["pixel_values"].min()) >= -1.0 and float(first[0]["pixel_values"].max()) <= 1.0


@pytest.mark.parametrize(
    "config", [{"int8_weight": {"skip_modules": "classifier"}}, {"half": {"dtype": "bfloat16"}}]
)
def test_smashed_vit_through_evaluate(config: dict[str, Any]) -> None:
    """Pixels are timed by forward, in each model's own dtype, and the report round-trips through JSON."""
    base = tiny_vit()
    smashed = smash(base, SmashConfig(config))
    report = evaluate(base, smashed, settings=Settings(measured_runs=2, quality_prompts=16))
    quality = report.quality
    assert quality is not None and quality.kind == "classifier"
    assert quality.label_agreement is not None and quality.label_agreement >= 0.9
    assert quality.cosine_min is not None and quality.cosine_min >= 0.99
    assert [r.prompt_length for r in report.smashed.runs] == [32, 32]  # recorded by the image side
    assert report.smashed.decode_path == "forward" and report.smashed.decode_latency_s is None
    assert EvaluationReport.from_json(report.to_json()).quality == quality


def test_label_agreement_is_a_named_metric_and_old_reports_still_load() -> None:
    assert "label_agreement" in QUALITY_LABELS
    old = {"kind": "encoder", "prompts": 4, "positions": 4, "cosine_mean": 0.999, "cosine_min": 0.998}
    assert QualityReport.from_dict(old).label_agreement is None
