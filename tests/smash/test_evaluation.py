"""evaluate() end to end on real (tiny and real-size) transformers models."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from smash import SmashConfig, registry, smash
from smash.errors import EvaluationInputError
from smash.evaluation import EvaluationReport, Settings, evaluate
from smash.evaluation.memory import PeakMemoryMeter
from smash.evaluation.prompts import load_prompts
from smash.evaluation.quality import evaluate_quality, perplexity

SMALL = Settings(
    prompt_lengths=(12,),
    generation_lengths=(4, 8),
    warmup_runs=1,
    measured_runs=2,
    quality_prompts=6,
    quality_new_tokens=6,
)


def test_tiny_model_gives_a_complete_report(tiny_llama: torch.nn.Module, tmp_path: Path) -> None:
    smashed = smash(tiny_llama, SmashConfig({"half": {"dtype": "bfloat16"}}))
    smashed.save_pretrained(tmp_path / "saved")
    report = evaluate(tiny_llama, smashed, settings=SMALL, smashed_path=tmp_path / "saved")
    for side in (report.base, report.smashed):
        assert side.decode_path == "loop"
        assert len(side.runs) == 4 and len(side.points) == 2
        assert all(len(r.step_latencies_s) == r.generation_length - 1 for r in side.runs)
        assert side.ttft_s.count == 4 and side.ttft_s.min > 0
        assert side.decode_latency_s is not None and side.decode_latency_s.count == 2 * 3 + 2 * 7
        assert side.decode_tokens_per_s is not None and side.decode_tokens_per_s > 0
        assert side.peak_memory_bytes is not None and side.peak_memory_bytes.min >= side.weight_bytes
        assert side.memory_per_token_method == "slope" and side.memory_per_token_bytes is not None
        assert side.compilations == 0
    assert report.base.dtype == "float32" and report.smashed.dtype == "bfloat16"
    assert report.smashed.weight_bytes == pytest.approx(report.base.weight_bytes / 2, rel=0.05)
    assert (
        report.smashed.disk_bytes is not None and report.smashed.disk_bytes > report.smashed.weight_bytes / 2
    )
    assert report.environment["threads"] >= 1 and "omp_wait_policy" in report.environment
    quality = report.quality
    assert quality is not None and quality.kind == "causal_lm" and quality.prompts == 6
    assert quality.positions == 36  # no tokenizer: no end-of-sequence, every continuation is complete
    assert 0 < quality.kl_mean < 1e-2 and quality.top1_agreement >= 0.9
    assert EvaluationReport.from_json(report.to_json()) == report


def test_generate_path_times_the_models_own_generate(tiny_llama: torch.nn.Module) -> None:
    settings = Settings(
        prompt_lengths=(8,), generation_lengths=(5,), warmup_runs=0, measured_runs=2, decode_path="generate"
    )
    report = evaluate(tiny_llama, tiny_llama, settings=settings)
    assert report.base.decode_path == "generate"
    assert [len(r.step_latencies_s) for r in report.base.runs] == [4, 4]
    assert report.base.decode_latency_s is not None and report.base.decode_latency_s.min > 0


def test_loop_and_generate_produce_the_same_greedy_tokens(tiny_llama: torch.nn.Module) -> None:
    from smash.evaluation.timing import generate_run, greedy_loop

    ids = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(1))
    loop = greedy_loop(tiny_llama, ids, 6, torch.device("cpu"))
    generated = generate_run(tiny_llama, ids, 6, torch.device("cpu"))
    assert loop.tokens.shape == (2, 6) and torch.equal(loop.tokens, generated.tokens)
    assert len(loop.step_latencies_s) == len(generated.step_latencies_s) == 5


def test_runtime_path_decodes_what_the_plain_loop_decodes(tiny_llama: torch.nn.Module) -> None:
    if "static_cache" not in registry:
        pytest.skip("static_cache is not registered yet (helper H2's algorithm)")
    from smash.evaluation.timing import greedy_loop, runtime_run

    smashed = smash(tiny_llama, {"static_cache": {"max_cache_len": 32, "prefill_chunk": 8}})
    ids = torch.randint(0, 256, (1, 11), generator=torch.Generator().manual_seed(2))
    expected = greedy_loop(tiny_llama, ids, 9, torch.device("cpu"))
    timed = runtime_run(smashed, ids, 9, torch.device("cpu"))
    assert torch.equal(timed.tokens, expected.tokens) and len(timed.step_latencies_s) == 8
    with pytest.raises(EvaluationInputError, match="max_cache_len 32"):
        runtime_run(smashed, ids, 30, torch.device("cpu"))


def test_model_against_itself_has_zero_kl_and_full_agreement(
    make_tiny_llama: Callable[..., torch.nn.Module],
) -> None:
    model = make_tiny_llama(seed=3)
    settings = Settings(
        prompt_lengths=(8,), generation_lengths=(3,), warmup_runs=0, measured_runs=1, quality_new_tokens=5
    )
    quality = evaluate(model, copy.deepcopy(model), settings=settings).quality
    assert quality is not None
    assert quality.prompts == len(load_prompts())
    assert quality.kl_mean == 0.0 and quality.kl_max == 0.0
    assert quality.top1_agreement == 1.0


def test_a_different_model_disagrees(make_tiny_llama: Callable[..., torch.nn.Module]) -> None:
    # Untied: a tied random model mostly predicts its input token, so two of them would agree by accident.
    base, other = make_tiny_llama(seed=1), make_tiny_llama(seed=2, tie_word_embeddings=False)
    quality = evaluate_quality(base, other, Settings(quality_prompts=8, quality_new_tokens=8))
    assert quality.kl_mean is not None and quality.kl_mean > 1e-3
    assert quality.top1_agreement is not None and quality.top1_agreement < 0.5


def test_perplexity_matches_cross_entropy_of_one_window(tiny_llama: torch.nn.Module) -> None:
    ids = torch.randint(0, 256, (40,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = tiny_llama(ids[None, :-1]).logits[0].double()
    expected = math.exp(float(torch.nn.functional.cross_entropy(logits, ids[1:])))
    value, tokens = perplexity(tiny_llama, ids, window=64)
    assert tokens == 39 and value == pytest.approx(expected, rel=1e-9)
    windowed, tokens = perplexity(tiny_llama, ids, window=16)
    assert tokens == 39 and windowed != pytest.approx(expected, rel=1e-9)  # contexts were cut


def test_perplexity_needs_a_tokenizer_and_a_readable_file(
    tiny_llama: torch.nn.Module, tmp_path: Path
) -> None:
    with pytest.raises(EvaluationInputError, match="tokenizer"):
        evaluate_quality(
            tiny_llama, tiny_llama, Settings(quality_prompts=1, eval_text=str(tmp_path / "x.txt"))
        )


def test_encoder_is_compared_by_pooled_cosine(tiny_llama_config: Any) -> None:
    from transformers import LlamaModel

    torch.manual_seed(0)
    encoder = LlamaModel(tiny_llama_config).eval()
    settings = Settings(prompt_lengths=(10,), warmup_runs=0, measured_runs=2, quality_prompts=5)
    report = evaluate(encoder, copy.deepcopy(encoder).to(torch.bfloat16), settings=settings)
    assert report.smashed.decode_path == "forward" and report.smashed.decode_latency_s is None
    assert report.quality is not None and report.quality.kind == "encoder"
    assert 0.99 < report.quality.cosine_mean < 1.0 and report.quality.cosine_min <= report.quality.cosine_mean


def test_cpu_peak_memory_sees_the_run_and_not_earlier_ones() -> None:
    meter = PeakMemoryMeter(torch.device("cpu"))
    if meter.method == "unavailable":
        pytest.skip("no /proc memory accounting on this system")
    held = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB allocated before: resident, not the run's
    with PeakMemoryMeter(torch.device("cpu")) as first:
        scratch = torch.ones(32 * 1024 * 1024 // 4)
        del scratch
    with PeakMemoryMeter(torch.device("cpu")) as second:
        pass
    del held
    assert first.increase_bytes is not None and second.increase_bytes is not None
    assert 30 * 2**20 <= first.increase_bytes <= 40 * 2**20
    assert second.increase_bytes < 4 * 2**20  # the first run's 32 MiB peak does not leak into the next


def test_recompilations_after_warm_up_are_counted(tiny_llama: torch.nn.Module) -> None:
    """A model compiled for static shapes recompiles as the cache grows; the static-cache runtime does not."""
    torch._dynamo.reset()
    naive = copy.deepcopy(tiny_llama)
    naive.compile(backend="eager", dynamic=False)
    settings = Settings(
        prompt_lengths=(8,), generation_lengths=(2, 4), warmup_runs=1, measured_runs=1, quality=False
    )
    if "static_cache" not in registry or "torch_compile" not in registry:
        pytest.skip("static_cache/torch_compile not registered yet (helper H2's algorithms)")
    smashed = smash(
        tiny_llama,
        {"static_cache": {"max_cache_len": 32, "prefill_chunk": 8}, "torch_compile": {"backend": "eager"}},
    )
    report = evaluate(naive, smashed, settings=settings)
    assert report.base.warmup_compilations >= 1 and report.base.compilations >= 1
    assert report.smashed.decode_path == "runtime"
    assert report.smashed.compilations == 0
    assert report.quality is None


@pytest.mark.slow
def test_hqq_2bit_has_worse_kl_than_8bit_on_smollm2(
    smollm2: tuple[torch.nn.Module, Any], tmp_path: Path
) -> None:
    if "hqq" not in registry:
        pytest.skip("hqq is not registered yet (helper H1's algorithm)")
    model, tokenizer = smollm2
    text = tmp_path / "eval.txt"
    text.write_text("\n".join(load_prompts()) * 2)
    settings = Settings(quality_prompts=4, quality_new_tokens=16, eval_text=str(text), ppl_max_tokens=256)
    results = {}
    for bits in (8, 2):
        smashed = smash(model, {"hqq": {"weight_bits": bits, "group_size": 64, "optimizer_iterations": 5}})
        results[bits] = evaluate_quality(model, smashed, settings, tokenizer=tokenizer)
        del smashed
    q8, q2 = results[8], results[2]
    assert q8.positions == q2.positions > 50
    assert q8.kl_mean is not None and q2.kl_mean is not None and q2.kl_mean > 10 * q8.kl_mean
    assert q8.top1_agreement is not None and q2.top1_agreement is not None
    assert q8.top1_agreement > 0.9 and q2.top1_agreement < q8.top1_agreement
    assert q2.perplexity_smashed is not None and q8.perplexity_smashed is not None
    assert q2.perplexity_smashed > q8.perplexity_smashed
    assert q8.perplexity_base == q2.perplexity_base


@pytest.mark.slow
def test_inputs_from_the_real_tokenizer(smollm2_path: Path) -> None:
    from transformers import AutoTokenizer

    from smash.evaluation.prompts import efficiency_input_ids, quality_prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    ids = efficiency_input_ids(tokenizer, tokenizer.vocab_size, length=50, batch_size=2, seed=0)
    assert ids.shape == (2, 50) and not torch.equal(ids[0], ids[1])
    assert tokenizer.decode(ids[0]).startswith(load_prompts()[0])
    chats = quality_prompt_ids(tokenizer, tokenizer.vocab_size, count=3, chat=True, seed=0)
    plain = quality_prompt_ids(tokenizer, tokenizer.vocab_size, count=3, chat=False, seed=0)
    assert len(chats) == 3 and all(len(c) > len(p) for c, p in zip(chats, plain, strict=True))
    assert "assistant" in tokenizer.decode(chats[0][-4:])


def test_a_device_setting_that_disagrees_with_the_weights_is_refused(tiny_llama: torch.nn.Module) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA to place the weights elsewhere")
    with pytest.raises(EvaluationInputError, match=r"settings\.device is 'cuda'"):
        evaluate(tiny_llama, tiny_llama, settings=Settings(device="cuda", quality=False))
