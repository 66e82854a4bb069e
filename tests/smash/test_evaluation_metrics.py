"""Exact statistics on synthetic timings, settings validation, report JSON round-trip, the plot file."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from smash.errors import EvaluationSettingsError
from smash.evaluation import EvaluationReport, QualityReport, RunMeasurement, Settings, plot_sweep, summarize
from smash.evaluation.efficiency import summarize_runs
from smash.evaluation.plot import PNG_SIGNATURE, sweep_data
from smash.evaluation.stats import percentile, slope
from smash.evaluation.table import format_table, report_table


def test_summarize_is_exact() -> None:
    stats = summarize([4.0, 1.0, 10.0, 2.0, 3.0])
    assert stats is not None
    assert stats.count == 5
    assert stats.mean == 4.0
    assert stats.median == 3.0
    assert stats.std == math.sqrt(10.0)  # population std: (0 + 9 + 36 + 4 + 1) / 5
    assert (stats.min, stats.max) == (1.0, 10.0)
    assert stats.p99 == pytest.approx(4.0 + 0.96 * 6.0, abs=1e-12)  # rank 0.99 * 4 = 3.96


def test_median_interpolates_and_single_value_has_zero_spread() -> None:
    stats = summarize([1.0, 2.0, 3.0, 5.0])
    assert stats is not None and stats.median == 2.5
    one = summarize([7.0])
    assert one is not None and (one.std, one.p99, one.median) == (0.0, 7.0, 7.0)
    assert summarize([]) is None
    assert percentile(list(range(101)), 99) == 99.0


def test_slope_is_least_squares() -> None:
    assert slope([1, 2, 3], [2, 4, 6]) == 2.0
    assert slope([0, 10, 20], [5, 5, 5]) == 0.0
    with pytest.raises(ValueError):
        slope([3, 3], [1, 2])


def _runs() -> list[RunMeasurement]:
    return [
        RunMeasurement(8, 10, 0.5, (0.1,) * 9, 1000, 0),
        RunMeasurement(8, 10, 0.3, (0.1,) * 8 + (1.0,), 3000, 2),
        RunMeasurement(8, 20, 0.4, (0.2,) * 19, 4000, 0),
        RunMeasurement(8, 20, 0.4, (0.2,) * 19, 4000, 0),
    ]


def _summary(runs: list[RunMeasurement]) -> object:
    return summarize_runs(
        runs,
        label="m",
        device="cpu",
        dtype="float32",
        decode_path="loop",
        weight_bytes=10_000,
        disk_bytes=None,
        memory_method="rss_hwm",
        warmup_compilations=3,
    )


def test_summarize_runs_pools_every_measured_run() -> None:
    report = _summary(_runs())
    steps = [0.1] * 9 + [0.1] * 8 + [1.0] + [0.2] * 38
    assert report.ttft_s.mean == pytest.approx(0.4)
    assert report.ttft_s.max == 0.5
    assert report.decode_latency_s.count == len(steps) == 56
    assert report.decode_latency_s.mean == pytest.approx(sum(steps) / 56)
    assert report.decode_latency_s.median == pytest.approx(0.2)
    assert report.decode_tokens_per_s == pytest.approx(56 / sum(steps))
    # peak = weights + increase; across runs 11000, 13000, 14000, 14000
    assert report.peak_memory_bytes.mean == 13000.0
    assert report.peak_memory_bytes.std == pytest.approx(math.sqrt((4e6 + 0 + 1e6 + 1e6) / 4))
    assert report.compilations == 2 and report.warmup_compilations == 3
    assert [(p.generation_length, p.peak_memory_bytes.mean) for p in report.points] == [
        (10, 12000.0),
        (20, 14000.0),
    ]


def test_memory_per_token_is_the_slope_over_the_sweep() -> None:
    report = _summary(_runs())
    assert report.memory_per_token_method == "slope"
    assert report.memory_per_token_bytes == pytest.approx((14000 - 12000) / (20 - 10))


def test_memory_per_token_with_one_length_is_increase_per_token() -> None:
    report = _summary(_runs()[:2])
    assert report.memory_per_token_method == "increase_per_token"
    assert report.memory_per_token_bytes == pytest.approx((1000 / 10 + 3000 / 10) / 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("measured_runs", 0),
        ("batch_size", True),
        ("device", "tpu"),
        ("decode_path", "fast"),
        ("generation_lengths", []),
        ("prompt_lengths", (8, -1)),
        ("threads", 0),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(EvaluationSettingsError, match=field) as info:
        Settings(**{field: value})
    assert isinstance(info.value, ValueError) and info.value.field == field


def test_settings_round_trip_and_reject_unknown_keys() -> None:
    settings = Settings(prompt_lengths=(16, 32), generation_lengths=(8,), threads=2, eval_text="t.txt")
    assert Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    with pytest.raises(EvaluationSettingsError, match="warmups"):
        Settings.from_dict({"warmups": 3})


def _report() -> EvaluationReport:
    base = _summary(_runs())
    smashed = summarize_runs(
        _runs()[2:],
        label="smashed",
        device="cpu",
        dtype="bfloat16",
        decode_path="runtime",
        weight_bytes=5_000,
        disk_bytes=6_000,
        memory_method="rss_hwm",
        warmup_compilations=0,
    )
    quality = QualityReport(
        kind="causal_lm",
        prompts=2,
        positions=40,
        kl_mean=0.01,
        kl_max=0.2,
        top1_agreement=0.975,
        perplexity_base=12.0,
        perplexity_smashed=12.5,
        perplexity_tokens=100,
    )
    return EvaluationReport(
        settings=Settings(), environment={"torch": "x"}, base=base, smashed=smashed, quality=quality
    )


def test_report_json_round_trips() -> None:
    report = _report()
    again = EvaluationReport.from_json(report.to_json())
    assert again == report
    assert again.to_dict() == report.to_dict()


def test_report_from_another_version_is_refused() -> None:
    data = _report().to_dict()
    data["format_version"] = 99
    with pytest.raises(EvaluationSettingsError, match="format_version"):
        EvaluationReport.from_dict(data)


def test_table_has_the_article_rows_and_numbers() -> None:
    text = report_table(_report())
    assert "| prefill (TTFT) mean / std / max s" in text
    assert "0.400 / 0.071 / 0.500" in text  # base ttft: mean 0.4, std sqrt(0.02/4), max 0.5
    assert "peak memory 10 -> 20 tokens GB" in text
    assert "0.9750" in text and "12.50" in text
    three = format_table({"a": _report().base, "b": _report().smashed, "c": _report().base})
    assert three.splitlines()[0].count("|") == 5


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_is_a_non_trivial_png(tmp_path: Path) -> None:
    import matplotlib.image

    report = _report()
    path = plot_sweep({"base": report.base, "smashed": report.smashed}, tmp_path / "sweep.png", title="t")
    data = path.read_bytes()
    assert _png_size(data) == (1100, 500)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (500, 1100)
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::7].tolist()}) > 20  # lines, text
    series = sweep_data({"base": report.base})["base"]
    assert series["generation_length"] == [10, 20]
    assert series["peak_memory_gb"] == [pytest.approx(12000 / 1e9), pytest.approx(14000 / 1e9)]


def test_the_shipped_prompt_set_is_a_few_dozen_distinct_prompts() -> None:
    from smash.evaluation.prompts import load_prompts

    prompts = load_prompts()
    assert 30 <= len(prompts) <= 100
    assert len(set(prompts)) == len(prompts)
    assert all(len(p.split()) >= 3 for p in prompts)
