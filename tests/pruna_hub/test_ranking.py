"""Deciding a ``rank_by`` tie by measurement: the choice rule, the per-host store, and the real measurement
(real smash of a random-weight tiny Llama built from its config, real timing) behind the sync and the
`recipes rank` CLI. Nothing asserts which recipe is faster: that is the host's answer, not the test's."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sync_support import write_tied_recipes as write_tie
from tiny_models import tiny_llama_config

from pruna_hub.cli import cli
from pruna_hub.recipes import Recipe, load_recipes
from pruna_hub.recipes.ranking import TIE_MARGIN, RecipeTiming, TimingStore, choose, describe, rank, shape_key
from pruna_hub.sync.steps import ModelSteps


def tie(directory: Path) -> list[Recipe]:
    return load_recipes([write_tie(directory)], include_builtin=False).top_tier(tiny_config(), "cpu")


def tiny_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = tiny_llama_config().to_dict()
    return {**config, **changes}


class CountingSteps:
    """The real measurement, counting how often it runs (the store must spare repeats)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(
        self, config: Mapping[str, Any], recipes: Sequence[Recipe]
    ) -> tuple[dict[str, float], dict[str, str]]:
        self.calls.append([r.name for r in recipes])
        return ModelSteps().time_decode(config, recipes, device="cpu")


def at(name: str, ms: float | None, error: str | None = None) -> RecipeTiming:
    return RecipeTiming(name, ms, "2026-11-30T00:00:00+00:00", error)


# --- the rule ----------------------------------------------------------------------------------------------


def test_the_fastest_wins_and_a_near_tie_goes_to_the_first_by_name(tmp_path: Path) -> None:
    hqq, int8 = tie(tmp_path)
    assert choose([hqq, int8], [at("tiny-hqq8", 20.0), at("tiny-int8", 15.0)]) is int8
    assert choose([int8, hqq], [at("tiny-hqq8", 15.0), at("tiny-int8", 20.0)]) is hqq
    within = 15.0 * (1 + TIE_MARGIN * 0.9)
    assert choose([hqq, int8], [at("tiny-hqq8", within), at("tiny-int8", 15.0)]) is hqq
    beyond = 15.0 * (1 + TIE_MARGIN * 1.5)
    assert choose([hqq, int8], [at("tiny-hqq8", beyond), at("tiny-int8", 15.0)]) is int8


def test_a_recipe_that_was_not_timed_is_never_chosen_and_none_timed_falls_back_to_the_name(
    tmp_path: Path,
) -> None:
    hqq, int8 = tie(tmp_path)
    failed = at("tiny-hqq8", None, "NotApplicableError: ...")
    assert choose([hqq, int8], [failed, at("tiny-int8", 99.0)]) is int8
    assert choose([hqq, int8], [failed, at("tiny-int8", None, "x")]) is hqq
    line = describe(int8, [failed, at("tiny-int8", 99.0)])
    assert line == (
        "tiny-int8 by decode latency on this host: "
        "tiny-hqq8 failed (NotApplicableError: ...), tiny-int8 99.0 ms"
    )


# --- the measurement and the store -------------------------------------------------------------------------


def test_rank_times_each_candidate_on_a_real_model_once_per_host_and_shape(tmp_path: Path) -> None:
    recipes = tie(tmp_path / "recipes")
    store = TimingStore(tmp_path / "timings.json")
    measure = CountingSteps()

    first = rank(recipes, tiny_config(), measure=measure, store=store, device="cpu")
    assert measure.calls == [["tiny-hqq8", "tiny-int8"]]  # both smashed, then timed in turns
    assert [t.recipe for t in first] == ["tiny-hqq8", "tiny-int8"]
    for timing in first:
        assert timing.error is None and timing.decode_ms is not None and timing.decode_ms > 0
        assert not timing.cached
    stored = json.loads(store.path.read_text())
    assert stored["format"] == 1 and len(stored["entries"]) == 2
    host = next(iter(stored["entries"].values()))["host"]
    assert host["device"] == "cpu" and host["torch"] and host["threads"] >= 1

    # A fine-tune: other names and token ids, the same shapes -> the stored timings, nothing measured.
    again = rank(
        recipes,
        tiny_config(_name_or_path="acme/other", eos_token_id=7),
        measure=measure,
        store=store,
        device="cpu",
    )
    assert len(measure.calls) == 1
    assert [(t.decode_ms, t.measured_at, t.cached) for t in again] == [
        (t.decode_ms, t.measured_at, True) for t in first
    ]

    # Another shape, or --fresh: measured again.
    rank(recipes, tiny_config(intermediate_size=192), measure=measure, store=store, device="cpu")
    rank(recipes, tiny_config(), measure=measure, store=store, device="cpu", fresh=True)
    assert len(measure.calls) == 3
    assert shape_key(tiny_config(intermediate_size=192)) != shape_key(tiny_config())
    assert len(json.loads(store.path.read_text())["entries"]) == 4


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"model_type": "no-such-model"}, "is not a config transformers can build"),
        ({"auto_map": {"AutoModelForCausalLM": "x.Model"}}, "remote code"),
        ({"architectures": ["NotATransformersClass"]}, "are not transformers classes"),
    ],
)
def test_a_config_that_cannot_be_built_is_recorded_for_every_candidate(
    tmp_path: Path, changes: dict[str, Any], reason: str
) -> None:
    recipes = tie(tmp_path / "recipes")
    store = TimingStore(tmp_path / "timings.json")
    timings = rank(recipes, tiny_config(**changes), measure=CountingSteps(), store=store, device="cpu")
    assert [t.decode_ms for t in timings] == [None, None]
    assert all("RankingError" in str(t.error) and reason in str(t.error) for t in timings)
    assert choose(recipes, timings).name == "tiny-hqq8"


def test_an_unreadable_store_is_measured_again_and_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recipes = tie(tmp_path / "recipes")
    store = TimingStore(tmp_path / "timings.json")
    store.path.write_text("{not json")
    measure = CountingSteps()
    with caplog.at_level(logging.WARNING):
        rank(recipes, tiny_config(), measure=measure, store=store, device="cpu")
    assert "cannot be read" in caplog.text and measure.calls
    assert len(json.loads(store.path.read_text())["entries"]) == 2


def test_a_store_that_cannot_be_written_still_ranks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recipes = tie(tmp_path / "recipes")
    (tmp_path / "a-file").write_text("")
    store = TimingStore(tmp_path / "a-file" / "timings.json")  # its parent is a file: mkdir fails
    with caplog.at_level(logging.WARNING):
        timings = rank(recipes, tiny_config(), measure=CountingSteps(), store=store, device="cpu")
    assert all(t.decode_ms is not None for t in timings)
    assert "cannot be written" in caplog.text
    assert choose(recipes, timings) in recipes


# --- the CLI -----------------------------------------------------------------------------------------------


def test_cli_rank_measures_then_reads_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRUNA_HUB_HOME", str(tmp_path / "home"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(tiny_config()))
    recipes = write_tie(tmp_path / "recipes")
    args = ["recipes", "rank", str(model), "--recipe-dir", str(recipes), "--device", "cpu"]
    runner = CliRunner()

    result = runner.invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["recipe"] for t in data["timings"]] == ["tiny-hqq8", "tiny-int8"]
    assert all(t["decode_ms"] > 0 and not t["cached"] for t in data["timings"])
    timings = [RecipeTiming(**t) for t in data["timings"]]
    assert data["chosen"] == choose(tie(tmp_path / "again"), timings).name
    assert (tmp_path / "home" / "recipe-timings.json").is_file()

    table = runner.invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split() == [
        "RECIPE",
        "PRIORITY",
        "DECODE_MS",
        "SOURCE",
        "AT",
        "ERROR",
    ]
    assert table.stdout.count("stored") == 2
    assert f"the sync chooses {data['chosen']}" in table.stdout


def test_cli_rank_refuses_what_is_not_a_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("[1, 2]")
    result = CliRunner().invoke(cli, ["recipes", "rank", str(bad), "--device", "cpu"])
    assert result.exit_code != 0 and "not a JSON object" in str(result.exception)
    gpt2 = tmp_path / "gpt2.json"
    gpt2.write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    result = CliRunner().invoke(cli, ["recipes", "rank", str(gpt2), "--device", "cpu"])
    assert "no recipe for cpu matches" in str(result.exception)
