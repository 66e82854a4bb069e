"""llama_cpp: tiny random models converted to GGUF, run by llama.cpp, compared with transformers.

F32 and F16 must generate what transformers generates, token for token (F16 rounds weights and
activations to half precision, which moves logits by ~1e-3 here, far below the tiny models' top-1
margins on these prompts); Q8_0 and Q4_0 are measured against a floor. Saved artifacts are a .gguf
plus JSON, loaded back by ``PrunaModel.from_pretrained`` and, as published, by llama-cpp-python alone.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from family_models import build_family_model
from tiny_models import build_tiny_llama, tiny_llama_config

from smash import PrunaModel, SmashConfig, smash
from smash.artifact_files import CODE_SUFFIXES, LOADER_PATTERNS
from smash.errors import IncompatibleAlgorithmsError, NotApplicableError
from smash.evaluation.generation import compare_generations
from smash.evaluation.timing import greedy_loop
from smash.ordering import determine_algorithm_order

llama_cpp = pytest.importorskip("llama_cpp")

NEW_TOKENS = 12
PROMPTS = [
    [int(t) for t in torch.randint(3, 256, (n,), generator=torch.Generator().manual_seed(n))]
    for n in (5, 9, 17)
]


def _smash(model: torch.nn.Module, quant_type: str, **extra: Any) -> PrunaModel:
    return smash(model, SmashConfig({"llama_cpp": {"quant_type": quant_type, "n_threads": 2, **extra}}))


def _greedy(model: Any, prompt: list[int], new_tokens: int = NEW_TOKENS) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False)
    return [int(t) for t in out[0, len(prompt) :]]


@pytest.fixture(scope="module")
def base() -> torch.nn.Module:
    return build_tiny_llama(seed=3)


@pytest.fixture(scope="module")
def f16(base: torch.nn.Module) -> PrunaModel:
    return _smash(base, "F16")


@pytest.fixture(scope="module")
def q8(base: torch.nn.Module) -> PrunaModel:
    return _smash(base, "Q8_0")


@pytest.mark.parametrize("quant_type", ["F32", "F16"])
def test_float_types_generate_what_transformers_generates(quant_type: str, base: torch.nn.Module) -> None:
    smashed = _smash(base, quant_type)
    for prompt in PROMPTS:
        assert _greedy(smashed, prompt) == _greedy(base, prompt)


def test_f16_logits_stay_close_to_the_base(base: torch.nn.Module, f16: PrunaModel) -> None:
    ids = torch.tensor([PROMPTS[2]])
    with torch.no_grad():
        expected = base(ids).logits
    got = f16(ids).logits
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 0.02 * expected.abs().max()
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


def test_logits_to_keep_gives_the_last_position_only(f16: PrunaModel) -> None:
    ids = torch.tensor([PROMPTS[2]])
    last = f16(ids, logits_to_keep=1).logits
    assert last.shape == (1, 1, 256)
    torch.testing.assert_close(last, f16(ids).logits[:, -1:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("quant_type", "floor"), [("Q8_0", 0.9), ("Q4_0", 0.3)])
def test_quantized_types_keep_most_greedy_tokens(
    quant_type: str, floor: float, base: torch.nn.Module
) -> None:
    smashed = _smash(base, quant_type)
    result = compare_generations(base, smashed, PROMPTS, NEW_TOKENS)
    assert result.token_agreement >= floor, result


def test_generate_returns_prompt_then_new_tokens_and_stops_at_eos(
    base: torch.nn.Module, f16: PrunaModel
) -> None:
    prompt = PROMPTS[0]
    free = _greedy(f16, prompt)
    eos = free[3]
    ids = torch.tensor([prompt])
    out = f16.generate(ids, max_new_tokens=NEW_TOKENS, eos_token_id=eos, do_sample=False)
    assert out[0, : len(prompt)].tolist() == prompt
    assert out[0, len(prompt) :].tolist() == free[: free.index(eos) + 1]
    forced = f16.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, eos_token_id=eos)
    assert forced.shape[1] == len(prompt) + NEW_TOKENS


def test_sampling_follows_torch_seed(f16: PrunaModel) -> None:
    ids = torch.tensor([PROMPTS[1]])

    def draw(seed: int) -> list[int]:
        torch.manual_seed(seed)
        return f16.generate(ids, max_new_tokens=16, do_sample=True, temperature=1.5, top_k=0).tolist()

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)


def test_the_evaluation_decode_loop_runs_through_llama_cpps_cache(f16: PrunaModel) -> None:
    """A transformers-style loop (forward + past_key_values) reuses llama.cpp's KV cache."""
    prompt = PROMPTS[1]
    timing = greedy_loop(f16, torch.tensor([prompt]), NEW_TOKENS, torch.device("cpu"))
    assert timing.tokens[0].tolist() == _greedy(f16, prompt)
    assert len(timing.step_latencies_s) == NEW_TOKENS - 1


def test_evaluate_measures_a_llama_cpp_model_like_any_other(base: torch.nn.Module, f16: PrunaModel) -> None:
    from smash.evaluation import Settings, evaluate

    settings = Settings(
        prompt_lengths=(16,),
        generation_lengths=(8,),
        measured_runs=2,
        quality_prompts=3,
        quality_new_tokens=8,
        threads=2,
    )
    report = evaluate(base, f16, settings=settings)
    assert report.smashed.decode_path == "loop"
    assert report.smashed.decode_latency_s is not None and report.smashed.decode_latency_s.count == 2 * 7
    assert report.quality is not None
    assert report.quality.generation_exact == 1.0
    assert report.quality.top1_agreement == 1.0 and report.quality.kl_mean < 1e-3


def test_save_then_load_gives_the_same_tokens_from_a_gguf(q8: PrunaModel, tmp_path: Path) -> None:
    q8.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "model-Q8_0.gguf" in names and "smash_config.json" in names
    assert not [n for n in names if n.endswith(CODE_SUFFIXES)]
    assert "model-Q8_0.gguf" in LOADER_PATTERNS
    loaded = PrunaModel.from_pretrained(tmp_path)
    assert loaded.smash_config == q8.smash_config
    for prompt in PROMPTS:
        assert _greedy(loaded, prompt) == _greedy(q8, prompt)


def test_the_saved_gguf_runs_in_llama_cpp_alone(q8: PrunaModel, tmp_path: Path) -> None:
    """What a user of the published file does: llama-cpp-python on the .gguf, no smash involved."""
    q8.save_pretrained(tmp_path)
    llm = llama_cpp.Llama(model_path=str(tmp_path / "model-Q8_0.gguf"), n_ctx=64, n_threads=2, verbose=False)
    prompt = PROMPTS[2]
    stream = llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
    tokens = [int(t) for t in itertools.islice(stream, NEW_TOKENS)]
    assert tokens == _greedy(q8, prompt)


def test_the_tokenizer_is_written_into_the_saved_gguf(tmp_path: Path) -> None:
    """A byte-level BPE tokenizer saved with the model is in the GGUF: llama.cpp tokenizes text alone."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    config = tiny_llama_config()
    config.vocab_size = 320  # the byte alphabet alone is 256 tokens
    smashed = smash(
        build_tiny_llama(seed=1, config=config),
        SmashConfig({"llama_cpp": {"quant_type": "F16", "n_threads": 2}}),
        tokenizer=tokenizer,
    )
    smashed.save_pretrained(tmp_path)
    llm = llama_cpp.Llama(model_path=str(tmp_path / "model-F16.gguf"), n_ctx=64, verbose=False)
    text = "the lazy fox jumps"
    assert llm.tokenize(text.encode(), add_bos=False, special=False) == tokenizer(text)["input_ids"]
    assert llm.token_eos() == tokenizer.eos_token_id


def test_llama3_rope_scaling_is_exported() -> None:
    """Llama 3.1's frequency-dependent rotary scaling reaches llama.cpp as its ``rope_freqs`` tensor."""
    config = tiny_llama_config()
    config.rope_parameters = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    base = build_tiny_llama(seed=2, config=config)
    smashed = _smash(base, "F32")
    ids = torch.randint(3, 256, (1, 150), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = base(ids).logits
    torch.testing.assert_close(smashed(ids).logits, expected, atol=1e-3, rtol=1e-3)


def test_qwen2_generates_what_transformers_generates() -> None:
    base = build_family_model("qwen2", seed=0)
    smashed = _smash(base, "F32")
    for prompt in PROMPTS:
        assert _greedy(smashed, prompt) == _greedy(base, prompt)


def test_sliding_window_models_are_refused() -> None:
    with pytest.raises(NotApplicableError, match="sliding-window"):
        _smash(build_family_model("mistral", seed=0), "F16")


@pytest.mark.parametrize("other", ["hqq", "int8_weight", "half", "static_cache"])
def test_torch_quantizers_and_the_static_cache_are_incompatible(other: str) -> None:
    with pytest.raises(IncompatibleAlgorithmsError):
        determine_algorithm_order(SmashConfig({"llama_cpp": {}, other: {}}))
