"""The encoder recipes: bert-cpu-int8 for sentence encoders (judged by pooled-embedding cosine, on the
real all-MiniLM-L6-v2) and vit-cpu-int8 for image classifiers (top-1 label agreement), selected by family
and class, evaluated with their own [evaluation] settings and gated with their own thresholds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from minilm import minilm_path

from pruna_hub.errors import NoRecipeError
from pruna_hub.recipes import QualityGate, Recipe, load_recipes
from pruna_hub.recipes.profile import profile_of
from pruna_hub.sync.steps import evaluation_settings
from smash import PrunaModel, smash
from smash.architectures import load_pretrained
from smash.evaluation import Settings, evaluate
from smash.evaluation.prompts import load_prompts
from smash.evaluation.quality import encoder_batches, encoder_outputs, evaluate_quality

# (config class, bare encoder class) of each family bert-cpu-int8 serves
ENCODERS = {
    "bert": ("BertConfig", "BertModel"),
    "roberta": ("RobertaConfig", "RobertaModel"),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaModel"),
    "mpnet": ("MPNetConfig", "MPNetModel"),
    "distilbert": ("DistilBertConfig", "DistilBertModel"),
}
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply."]


def recipe(name: str) -> Recipe:
    return load_recipes().get(name)


def quality_failures(gate: QualityGate, quality: dict[str, Any]) -> list[str]:
    """The gate's quality thresholds alone: the speed ratio is the job's to derive (and never asserted on
    in tests, which do not time)."""
    thresholds = {k: v for k, v in gate.to_dict().items() if not k.endswith("_ratio")}
    return QualityGate(**thresholds).failures_from(quality)


def tiny_encoder(family: str, seed: int = 0) -> torch.nn.Module:
    config_class, model_class = ENCODERS[family]
    sizes: dict[str, Any] = {"vocab_size": 500}
    if family == "distilbert":
        sizes.update(dim=64, n_layers=2, n_heads=4, hidden_dim=128)
    else:
        sizes.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    torch.manual_seed(seed)
    return getattr(transformers, model_class)(getattr(transformers, config_class)(**sizes)).eval()


def tiny_vit(seed: int = 0) -> torch.nn.Module:
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=10,
    )
    torch.manual_seed(seed)
    return transformers.ViTForImageClassification(config).eval()


# --- selection -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(ENCODERS))
def test_sentence_encoders_of_the_bert_family_get_bert_cpu_int8(family: str) -> None:
    config_class, model_class = ENCODERS[family]
    config = getattr(transformers, config_class)(architectures=[model_class]).to_dict()
    assert load_recipes().select(config, "cpu").name == "bert-cpu-int8"


def test_encoder_recipes_match_only_the_classes_their_gates_can_judge() -> None:
    book = load_recipes()
    vit = transformers.ViTConfig(architectures=["ViTForImageClassification"]).to_dict()
    assert book.select(vit, "cpu").name == "vit-cpu-int8"
    for model_type, architecture in (("bert", "BertForMaskedLM"), ("vit", "ViTModel")):
        with pytest.raises(NoRecipeError):  # an LM head (judged as a generator) / no labels to agree on
            book.select({"architectures": [architecture], "model_type": model_type}, "cpu")


def test_encoder_recipes_gate_quality_and_forward_speed_not_decoding() -> None:
    bert, vit = recipe("bert-cpu-int8").quality_gate, recipe("vit-cpu-int8").quality_gate
    assert bert.min_cosine is not None and bert.min_cosine >= 0.99 and bert.max_decode_ratio is None
    assert vit.min_label_agreement is not None and vit.max_decode_ratio is None
    assert bert.max_latency_ratio == vit.max_latency_ratio == 1.0
    assert vit.failures({"label_agreement": 0.9, "cosine_min": 0.999, "latency_ratio": 1.2}) == [
        "top-1 label agreement 0.9 is not >= 0.95",
        "forward latency ratio to the base 1.2 is not <= 1",
    ]
    assert bert.failures({"cosine_min": 0.999}) == [
        "forward latency ratio to the base was not measured (gate 1.0)"
    ]


# --- the recipes on tiny random models, with their own evaluation settings --------------------------------


@pytest.mark.slow  # the recipe's full timing: 2 x 12 forwards per model, a collected heap each
def test_bert_cpu_int8_through_its_own_evaluation_settings() -> None:
    chosen = recipe("bert-cpu-int8")
    base = tiny_encoder("bert")
    report = evaluate(base, smash(base, chosen.smash_config()), settings=evaluation_settings(chosen))
    assert report.quality is not None and report.quality.kind == "encoder"
    assert quality_failures(chosen.quality_gate, report.quality.to_dict()) == []
    lengths = chosen.evaluation["prompt_lengths"]
    assert [r.prompt_length for r in report.smashed.runs] == [
        n for n in lengths for _ in range(chosen.evaluation["measured_runs"])
    ]
    assert report.smashed.decode_latency_s is None and report.smashed.ttft_s.mean > 0


@pytest.mark.parametrize("family", sorted(set(ENCODERS) - {"bert"}))
def test_bert_cpu_int8_serves_each_bert_like_family(family: str) -> None:
    chosen = recipe("bert-cpu-int8")
    base = tiny_encoder(family)
    settings = replace(evaluation_settings(chosen), warmup_runs=0, measured_runs=1)  # one timing per length
    report = evaluate(base, smash(base, chosen.smash_config()), settings=settings)
    assert report.quality is not None and report.quality.kind == "encoder"
    assert quality_failures(chosen.quality_gate, report.quality.to_dict()) == []


def test_vit_cpu_int8_keeps_labels_through_its_evaluation_settings(tmp_path: Path) -> None:
    chosen = recipe("vit-cpu-int8")
    base = tiny_vit()
    smashed = smash(base, chosen.smash_config())
    assert type(smashed.model.classifier) is torch.nn.Linear  # the head keeps full precision
    report = evaluate(base, smashed, settings=evaluation_settings(chosen))
    quality = report.quality
    assert quality is not None and quality.kind == "classifier"
    assert quality.prompts == chosen.evaluation["quality_prompts"]
    assert quality_failures(chosen.quality_gate, quality.to_dict()) == []
    smashed.save_pretrained(tmp_path / "vit")  # what the job publishes loads back with the same labels
    loaded = PrunaModel.from_pretrained(tmp_path / "vit")
    assert evaluate_quality(smashed, loaded, Settings(quality_prompts=16)).label_agreement == 1.0


# --- the real all-MiniLM-L6-v2 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> tuple[torch.nn.Module, Any]:
    return load_pretrained(minilm_path())


def embed(model: Any, tokenizer: Any, sentences: list[str]) -> torch.Tensor:
    batch = dict(tokenizer(sentences, padding=True, return_tensors="pt"))
    return encoder_outputs(model, {k: batch[k] for k in ("input_ids", "attention_mask")})[0]


def test_real_minilm_keeps_its_sentence_embeddings_under_bert_cpu_int8(
    minilm: tuple[torch.nn.Module, Any], tmp_path: Path
) -> None:
    base, tokenizer = minilm
    assert type(base).__name__ == "BertModel" and tokenizer is not None
    chosen = recipe("bert-cpu-int8")
    assert chosen.matches(profile_of(base.config), "cpu")
    smashed = smash(base, chosen.smash_config(), tokenizer=tokenizer)
    quality = evaluate_quality(base, smashed, evaluation_settings(chosen), tokenizer=tokenizer)
    assert quality.kind == "encoder" and quality.prompts == len(load_prompts())  # the whole set
    assert quality.cosine_min is not None and quality.cosine_min >= 0.99
    assert quality_failures(chosen.quality_gate, quality.to_dict()) == []
    smashed.save_pretrained(tmp_path / "minilm")
    loaded = PrunaModel.from_pretrained(tmp_path / "minilm")
    torch.testing.assert_close(embed(loaded, tokenizer, SENTENCES), embed(smashed, tokenizer, SENTENCES))


def test_real_minilm_embeds_meaning_and_its_prompts_are_padded_batches(
    minilm: tuple[torch.nn.Module, Any],
) -> None:
    """A check that the folder loads as the real model: paraphrases sit closer than unrelated sentences."""
    base, tokenizer = minilm
    vectors = torch.nn.functional.normalize(embed(base, tokenizer, SENTENCES), dim=-1)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > 0.6 > unrelated
    batches = encoder_batches(base, Settings(), tokenizer)
    assert sum(b["input_ids"].shape[0] for b in batches) == len(load_prompts())
    assert any((b["attention_mask"] == 0).any() for b in batches)
