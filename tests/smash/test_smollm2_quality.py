"""hqq on the real SmolLM2-135M-Instruct: quality against the fp32 base on real English text, chat answers,
and the size of the saved artifact.

The text (tests/smash/data/english.txt) is public-domain prose (Austen, Lincoln, Conan Doyle) plus a
paragraph written for this test. 4-bit is measured at group size 64 because the model's weights come from
a Q4_1 GGUF (blocks of 32), which 4-bit at group size 32 recovers almost exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from smash import PrunaModel, SmashConfig, smash
from smash.artifact_files import PICKLE_SUFFIXES
from smash.evaluation.quality import chunked_logits

pytestmark = pytest.mark.slow

TEXT = Path(__file__).parent / "data" / "english.txt"
# Questions with one right answer. Open-ended prompts ("Write one sentence about the sea.") sit on near-ties
# after a few words: there even hqq 8-bit with fp32 compute picks another word than the base at token 8.
CHAT_PROMPTS = [
    "What is the capital of France?",
    "Name three colors of the rainbow.",
    "How many days are in a week?",
    "Who wrote Romeo and Juliet?",
]


@pytest.fixture(scope="module")
def text_ids(smollm2: tuple[torch.nn.Module, Any]) -> torch.Tensor:
    _, tokenizer = smollm2
    ids = tokenizer(TEXT.read_text(), return_tensors="pt").input_ids
    assert ids.shape[1] >= 400
    return ids


@pytest.fixture(scope="module")
def base_logits(smollm2: tuple[torch.nn.Module, Any], text_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return smollm2[0](text_ids).logits[0].float()


@pytest.fixture(scope="module")
def hqq8(smollm2: tuple[torch.nn.Module, Any]) -> PrunaModel:
    model, tokenizer = smollm2
    return smash(model, SmashConfig({"hqq": {"weight_bits": 8, "group_size": 64}}), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def hqq4(smollm2: tuple[torch.nn.Module, Any]) -> PrunaModel:
    model, tokenizer = smollm2
    return smash(model, SmashConfig({"hqq": {"weight_bits": 4, "group_size": 64}}), tokenizer=tokenizer)


def agreement(model: Any, ids: torch.Tensor, reference: torch.Tensor) -> float:
    predicted = chunked_logits(model, ids).argmax(-1)
    return float((predicted == reference.argmax(-1)).double().mean())


def greedy_answer(model: Any, tokenizer: Any, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    return str(tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True))


def test_hqq_8bit_agrees_with_the_base_on_real_text(
    hqq8: PrunaModel, text_ids: torch.Tensor, base_logits: torch.Tensor
) -> None:
    assert agreement(hqq8, text_ids, base_logits) >= 0.95


def test_hqq_8bit_gives_the_same_greedy_chat_answers(
    hqq8: PrunaModel, smollm2: tuple[torch.nn.Module, Any]
) -> None:
    model, tokenizer = smollm2
    for question in CHAT_PROMPTS:
        expected = greedy_answer(model, tokenizer, question)
        assert len(expected.split()) >= 3  # the base answers something, so equality means something
        assert greedy_answer(hqq8, tokenizer, question) == expected


def test_hqq_4bit_group_64_keeps_most_predictions(
    hqq4: PrunaModel, text_ids: torch.Tensor, base_logits: torch.Tensor
) -> None:
    assert agreement(hqq4, text_ids, base_logits) >= 0.65


def test_saved_hqq_4bit_is_small_safetensors_and_loads_back_equal(
    hqq4: PrunaModel, smollm2_path: Path, text_ids: torch.Tensor, tmp_path: Path
) -> None:
    hqq4.save_pretrained(tmp_path)
    base_bytes = (smollm2_path / "model.safetensors").stat().st_size
    saved_bytes = sum(p.stat().st_size for p in tmp_path.iterdir() if p.suffix == ".safetensors")
    assert saved_bytes <= 0.35 * base_bytes, f"{saved_bytes / base_bytes:.3f}x of the fp32 base"
    assert not [p.name for p in tmp_path.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    loaded = PrunaModel.from_pretrained(tmp_path)
    window = text_ids[:, :128]
    with torch.no_grad():
        assert torch.equal(loaded(window).logits, hqq4(window).logits)


def test_the_int8_cpu_recipe_passes_its_generation_gate_on_smollm2(
    smollm2: tuple[torch.nn.Module, Any],
) -> None:
    """The built-in llama-cpu-int8 recipe as the sync runs it (compiled with dynamo's eager backend here,
    to spare the inductor compile): greedy generations through its static-cache runtime keep the matching
    prefix its gate asks for, on the real model, with the chat template."""
    from pruna_hub.recipes import load_recipes
    from smash.evaluation import Settings
    from smash.evaluation.quality import evaluate_quality

    model, tokenizer = smollm2
    recipe = load_recipes().get("llama-cpu-int8")
    params = {name: dict(values) for name, values in recipe.smash.items()}
    params["torch_compile"]["backend"] = "eager"
    smashed = smash(model, SmashConfig(params), tokenizer=tokenizer)
    quality = evaluate_quality(
        model, smashed, Settings(quality_prompts=8, quality_new_tokens=32), tokenizer=tokenizer
    )
    assert quality.generation_prefix is not None and quality.generation_agreement is not None
    quality_gate = dataclasses.replace(recipe.quality_gate, max_decode_ratio=None)  # speed: not timed here
    assert quality_gate.failures_from(quality.to_dict()) == []
    assert 0.0 < quality.generation_prefix <= quality.generation_agreement <= 1.0
