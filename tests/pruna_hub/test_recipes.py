"""Recipes: every built-in loads and plans, every kind of bad file is named by file and field, selection is
deterministic, the content hash is stable and follows the content, and the `recipes` CLI renders all of it.

Recipes are validated by the real engine (registry, SmashConfig, determine_algorithm_order) and the real
evaluation Settings; models are never loaded here (recipes are pure planning).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import smash
from pruna_hub.cli import cli, main
from pruna_hub.errors import NoRecipeError, RecipeConflictError, RecipeError
from pruna_hub.recipes import (
    QualityGate,
    SizeBudget,
    builtin_dir,
    load_recipes,
    model_signature,
    parse_recipe_file,
)
from smash import SmashConfig, determine_algorithm_order

BUILTIN_FILES = sorted(builtin_dir().glob("*.toml"))
DELETE = object()

VALID: dict[str, Any] = {
    "description": "test recipe",
    "version": 1,
    "priority": 10,
    "device": "cpu",
    "match": {"architectures": ["LlamaForCausalLM"], "model_types": ["llama"]},
    "smash": {
        "hqq": {"weight_bits": 8, "group_size": 64},
        "static_cache": {"max_cache_len": 512},
        "torch_compile": {},
    },
    "evaluation": {"prompt_lengths": [64], "generation_lengths": [32, 64], "measured_runs": 2},
    "quality_gate": {"min_top1_agreement": 0.9, "max_kl": 0.05},
    "budget": {"max_parameters": 1_000_000_000},
    "publish": {"repo_template": "{target_org}/{name}-smashed-test"},
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{prefix}{key}]", to_toml(value, f"{prefix}{key}.")]
    return "\n".join(lines)


def recipe_data(**changes: Any) -> dict[str, Any]:
    """VALID with dotted-key changes (``smash__hqq__weight_bits=5``), DELETE removes a key."""
    data = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        table = data
        for part in parents:
            table = table.setdefault(part, {})
        if value is DELETE:
            table.pop(last, None)
        else:
            table[last] = value
    return data


def write(
    directory: Path, name: str = "test-recipe", data: Mapping[str, Any] | None = None, **changes: Any
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(to_toml(data if data is not None else recipe_data(**changes)) + "\n")
    return path


# --- built-ins -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUILTIN_FILES, ids=lambda p: p.stem)
def test_builtin_recipe_loads_and_is_ordered_by_the_planner(path: Path) -> None:
    try:
        recipe = parse_recipe_file(path, builtin=True)
    except RecipeError as e:  # e.g. an algorithm another part of the project has not registered yet
        pytest.fail(f"built-in recipe {path.name} does not load: {e} (registered: {smash.registry.names()})")
    config = SmashConfig(recipe.smash)
    assert list(recipe.order) == determine_algorithm_order(config)
    assert sorted(recipe.order) == sorted(config)
    assert recipe.smash_config() == config
    assert recipe.device in ("cpu", "cuda")
    assert recipe.repo_id("HuggingFaceTB/SmolLM2-135M-Instruct", target_org="PrunaAI").startswith(
        "PrunaAI/SmolLM2-135M-Instruct-smashed-"
    )


def test_builtins_cover_the_families_on_both_devices() -> None:
    book = load_recipes()
    families = {
        "LlamaForCausalLM": "llama",
        "MistralForCausalLM": "mistral",
        "Qwen2ForCausalLM": "qwen2",
        "GPT2LMHeadModel": "gpt2",
    }
    for architecture, model_type in families.items():
        config = {"architectures": [architecture], "model_type": model_type}
        for device in ("cpu", "cuda"):
            assert book.select(config, device).device == device
    for model_type in families.values():  # recipes one model can get (any device) publish to different repos
        mine = [r for r in book if model_type in r.model_types]
        repo_ids = {r.repo_id("org/Model", target_org="PrunaAI") for r in mine}
        assert len(repo_ids) == len(mine) >= 2, f"{model_type}: recipes share a repo name"


def test_cpu_llama_is_a_measured_tie_of_hqq8_and_int8_with_their_heads_then_a_4bit_one() -> None:
    """Which of hqq 8-bit and int8 decodes faster depends on the CPU (see the recipes' descriptions), so
    they tie at one priority and the sync measures; 4-bit is lower, for size."""
    book = load_recipes()
    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    tied = book.top_tier(llama, "cpu")
    assert [r.name for r in tied] == ["llama-cpu-hqq8", "llama-cpu-int8"]
    assert {r.rank_by for r in tied} == {"decode_latency"}
    assert book.select(llama, "cpu").name == "llama-cpu-hqq8"  # without a measurement: by name
    for recipe in tied:
        assert recipe.order[1:] == ("static_cache", "torch_compile")
        assert next(iter(recipe.smash.values()))["skip_modules"] == ""  # lm_head quantized too
        assert (recipe.quality_gate.min_top1_agreement or 0) >= 0.95
    alternatives = [next(iter(r.smash)) for r in book.matching(llama, "cpu")]
    assert alternatives == ["hqq", "int8_weight", "hqq", "llama_cpp"]
    assert [r.smash.get("hqq", {}).get("weight_bits") for r in book.matching(llama, "cpu")] == [
        8,
        None,
        4,
        None,
    ]


# config.json of each family as transformers writes it (the classes' defaults, a real class name), and the
# CPU recipe that must serve it; None: no recipe yet, for the reason the decoder recipe states.
FAMILY_RECIPES: dict[str, tuple[str, str, str | None]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", "llama-cpu-hqq8"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "qwen2-cpu-hqq8"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", "decoder-cpu-int8"),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", None),
    "mistral": ("MistralConfig", "MistralForCausalLM", "mistral-cpu-hqq8"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", "decoder-cpu-int8"),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", "decoder-cpu-int8"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", "decoder-cpu-int8"),
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM", "decoder-cpu-int8"),
    "granite": ("GraniteConfig", "GraniteForCausalLM", "decoder-cpu-int8"),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", "decoder-cpu-int8"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", "gpt2-cpu-compiled"),
}


@pytest.mark.parametrize("family", sorted(FAMILY_RECIPES))
def test_builtin_cpu_recipes_serve_the_hubs_decoder_families_by_family(family: str) -> None:
    import transformers

    config_class, architecture, expected = FAMILY_RECIPES[family]
    config = getattr(transformers, config_class)(architectures=[architecture]).to_dict()
    book = load_recipes()
    if expected is None:
        with pytest.raises(NoRecipeError, match="mixture of experts"):
            book.select(config, "cpu")
        return
    assert book.select(config, "cpu").name == expected
    renamed = {**config, "architectures": [architecture.replace("ForCausalLM", "ForMyTask")]}
    assert book.select(renamed, "cpu").name == expected  # matched by family, not class name


def test_profiles_read_attention_kinds_and_experts_from_config_json() -> None:
    from pruna_hub.recipes.profile import profile_of

    assert profile_of({"model_type": "mistral", "sliding_window": 4096}).attention == "sliding"
    assert profile_of(
        {"model_type": "qwen2", "sliding_window": 4096, "use_sliding_window": False}
    ).attention == ("full")
    hybrid = {"model_type": "qwen3", "layer_types": ["sliding_attention", "full_attention"]}
    assert profile_of(hybrid).attention == "hybrid"
    assert profile_of({"model_type": "gemma2"}).attention == "hybrid"  # the family's default pattern
    assert profile_of({"model_type": "qwen3_moe", "num_experts": 8}).moe
    assert not profile_of({"model_type": "x", "num_experts": "8", "layer_types": "nope"}).moe  # malformed


def test_a_recipe_can_match_attention_kinds_and_experts(tmp_path: Path) -> None:
    write(tmp_path, "full-only", match={"model_types": ["qwen3"], "attention": ["full"], "moe": False})
    book = load_recipes([tmp_path], include_builtin=False)
    assert book.select({"model_type": "qwen3"}, "cpu").name == "full-only"
    sliding = {"model_type": "qwen3", "layer_types": ["sliding_attention", "full_attention"]}
    with pytest.raises(NoRecipeError, match="hybrid attention"):
        book.select(sliding, "cpu")
    with pytest.raises(NoRecipeError, match="mixture of experts"):
        book.select({"model_type": "qwen3", "num_experts": 4}, "cpu")
    with pytest.raises(RecipeError, match="attention"):
        write(tmp_path, "bad", match={"model_types": ["qwen3"], "attention": ["windowed"]})
        load_recipes([tmp_path], include_builtin=False)


def test_builtin_static_caches_hold_the_evaluation_lengths() -> None:
    for recipe in load_recipes():
        if "static_cache" in recipe.smash:
            longest = max(recipe.evaluation["prompt_lengths"]) + max(recipe.evaluation["generation_lengths"])
            assert recipe.smash["static_cache"]["max_cache_len"] >= longest, recipe.name


# --- validation errors name file and field ----------------------------------------------------------------

TEMPLATE, TPL = "publish__repo_template", "publish.repo_template"
GATE = "quality_gate.min_top1_agreement"
BAD_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing device", {"device": DELETE}, "device", "missing required field"),
    ("unknown device", {"device": "tpu"}, "device", "'tpu' is not one of cpu, cuda"),
    ("typo at top level", {"priorty": 3}, "priorty", "unknown field"),
    ("version zero", {"version": 0}, "version", "below the minimum"),
    ("priority not int", {"priority": "high"}, "priority", "expected an integer"),
    ("unknown algorithm", {"smash__gptq": {}}, "smash.gptq", "'gptq' is not registered"),
    ("bad hyperparameter", {"smash__hqq__weight_bits": 5}, "smash.hqq.weight_bits", "one of 2, 3, 4, 8"),
    ("unknown hyperparameter", {"smash__hqq__bits": 4}, "smash.hqq.bits", "known hyperparameters are"),
    ("algorithm not a table", {"smash__hqq": 4}, "smash.hqq", "expected a table"),
    ("no algorithm", {"smash": {}}, "smash", "names no algorithm"),
    ("two quantizers", {"smash__int8_weight": {}}, "smash", "at most one quantizer"),
    ("match nothing", {"match": {}}, "match", "matches every model"),
    (
        "bad architecture",
        {"match__architectures": ["Llama For"]},
        "match.architectures[0]",
        "not a string matching",
    ),
    ("gate out of range", {"quality_gate__min_top1_agreement": 1.5}, GATE, "above"),
    ("empty gate", {"quality_gate": {}}, "quality_gate", "sets no threshold"),
    ("gate typo", {"quality_gate__max_kld": 0.1}, "quality_gate.max_kld", "unknown field"),
    ("negative budget", {"budget__max_parameters": -1}, "budget.max_parameters", "below the minimum"),
    ("budget as text", {"budget__max_parameters": "3B"}, "budget.max_parameters", "expected an integer"),
    ("empty budget", {"budget": {}}, "budget", "sets no limit"),
    ("template without name", {TEMPLATE: "{target_org}/smashed"}, TPL, "{name}"),
    ("template secret", {TEMPLATE: "{target_org}/{name}-{token}"}, TPL, "{token} is not allowed"),
    ("template conversion", {TEMPLATE: "{target_org}/{name!r}"}, TPL, "is not allowed"),
    ("template attribute", {TEMPLATE: "{target_org}/{name.__class__}"}, TPL, "is not allowed"),
    ("template fixed org", {TEMPLATE: "evil/{name}"}, TPL, "must start with"),
    ("template space", {TEMPLATE: "{target_org}/{name} smashed"}, TPL, "may only use"),
    ("template renders badly", {TEMPLATE: "{target_org}/{name}--x"}, TPL, "not a valid Hub repo id"),
    ("evaluation unknown", {"evaluation__runs": 3}, "evaluation.runs", "known settings are"),
    ("evaluation bad length", {"evaluation__generation_lengths": [0]}, "evaluation.generation_lengths", ">="),
    ("evaluation device", {"evaluation__device": "cuda"}, "evaluation.device", "top-level `device`"),
    (
        "cache too small",
        {"smash__static_cache__max_cache_len": 64},
        "smash.static_cache.max_cache_len",
        "cannot",
    ),
]


@pytest.mark.parametrize(
    ("changes", "field", "fragment"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_recipe_error_names_file_and_field(
    tmp_path: Path, changes: dict[str, Any], field: str, fragment: str
) -> None:
    path = write(tmp_path, **changes)
    with pytest.raises(RecipeError) as info:
        parse_recipe_file(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert fragment in str(info.value)
    assert str(path) in str(info.value) and field in str(info.value)


def test_toml_syntax_error_and_bad_file_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('device = "cpu\n')
    with pytest.raises(RecipeError) as info:
        parse_recipe_file(broken)
    assert info.value.field == "(syntax)" and "line 1" in str(info.value)
    badly_named = write(tmp_path, "Bad Name")
    with pytest.raises(RecipeError) as info:
        parse_recipe_file(badly_named)
    assert info.value.field == "name"


def test_algorithm_not_running_on_the_device_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smash.algorithms.base import Algorithm, Group

    class CudaOnlyKernel(Algorithm):
        name = "cuda_only_kernel"
        group = Group.KERNEL
        devices = frozenset({"cuda"})

    # Registered for this test only: the global registry is what SmashConfig validates against.
    monkeypatch.setitem(smash.registry._algorithms, "cuda_only_kernel", CudaOnlyKernel)
    assert (
        parse_recipe_file(write(tmp_path / "gpu", smash__cuda_only_kernel={}, device="cuda")).device == "cuda"
    )
    with pytest.raises(RecipeError) as info:
        parse_recipe_file(write(tmp_path / "cpu", smash__cuda_only_kernel={}))
    assert info.value.field == "smash.cuda_only_kernel" and "does not run on 'cpu'" in str(info.value)


# --- selection, conflicts, overrides ----------------------------------------------------------------------


def test_selection_uses_priority_and_accepts_transformers_configs(tmp_path: Path) -> None:
    from transformers import LlamaConfig, MistralConfig

    write(tmp_path, "llama-fast", priority=20)
    write(tmp_path, "llama-small", priority=5, smash__hqq__weight_bits=4)
    write(tmp_path, "llama-gpu", device="cuda")
    book = load_recipes([tmp_path], include_builtin=False)
    config = LlamaConfig(architectures=["LlamaForCausalLM"])
    assert model_signature(config) == (("LlamaForCausalLM",), "llama")
    assert book.select(config, "cpu").name == "llama-fast"
    assert [r.name for r in book.matching(config.to_dict(), "cpu")] == ["llama-fast", "llama-small"]
    assert book.select(config, "cuda").name == "llama-gpu"
    with pytest.raises(NoRecipeError, match="MistralForCausalLM"):
        book.select(MistralConfig(architectures=["MistralForCausalLM"]), "cpu")
    with pytest.raises(NoRecipeError, match="no recipe"):
        book.select({"architectures": "not-a-list", "model_type": 3}, "cpu")


def test_both_criteria_must_match(tmp_path: Path) -> None:
    write(tmp_path, "llama-only")
    book = load_recipes([tmp_path], include_builtin=False)
    assert book.matching({"architectures": ["LlamaForCausalLM"], "model_type": "mistral"}, "cpu") == []
    assert book.matching({"architectures": ["Other", "LlamaForCausalLM"], "model_type": "llama"}, "cpu")


@pytest.mark.parametrize(
    ("second", "conflict"),
    [
        ({}, True),  # same match, same priority
        ({"match": {"model_types": ["llama"]}}, True),  # a llama model matches both
        ({"priority": 11}, False),
        ({"device": "cuda"}, False),
        ({"match": {"architectures": ["MistralForCausalLM"]}}, False),
    ],
)
def test_ties_are_rejected_at_load(tmp_path: Path, second: dict[str, Any], conflict: bool) -> None:
    first = write(tmp_path, "a-first")
    other = write(tmp_path, "b-second", data={**recipe_data(), **second})
    if not conflict:
        assert len(load_recipes([tmp_path], include_builtin=False)) == 2
        return
    with pytest.raises(RecipeConflictError) as info:
        load_recipes([tmp_path], include_builtin=False)
    assert info.value.path == str(other) and info.value.field == "priority"
    assert str(first) in str(info.value)


@pytest.mark.parametrize(("first_ranked", "second_ranked"), [(True, True), (True, False), (False, True)])
def test_a_tie_loads_only_when_every_recipe_in_it_asks_to_be_ranked(
    tmp_path: Path, first_ranked: bool, second_ranked: bool
) -> None:
    write(tmp_path, "a-first", rank_by="decode_latency" if first_ranked else DELETE)
    write(tmp_path, "b-second", rank_by="decode_latency" if second_ranked else DELETE)
    write(tmp_path, "c-lower", priority=5, rank_by="decode_latency")
    if not (first_ranked and second_ranked):
        with pytest.raises(RecipeConflictError, match="set `rank_by` in both"):
            load_recipes([tmp_path], include_builtin=False)
        return
    book = load_recipes([tmp_path], include_builtin=False)
    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert [r.name for r in book.top_tier(llama, "cpu")] == ["a-first", "b-second"]
    assert book.select(llama, "cpu").name == "a-first"
    assert book.top_tier({"architectures": ["Other"]}, "cpu") == []


def test_rank_by_is_checked_and_left_out_of_the_content_hash(tmp_path: Path) -> None:
    plain = parse_recipe_file(write(tmp_path / "a", "same"))
    ranked = parse_recipe_file(write(tmp_path / "b", "same", rank_by="decode_latency"))
    assert (plain.rank_by, ranked.rank_by) == (None, "decode_latency")
    assert plain.content_hash == ranked.content_hash  # choosing differently never re-smashes
    assert ranked.to_dict()["rank_by"] == "decode_latency"
    with pytest.raises(RecipeError) as info:
        parse_recipe_file(write(tmp_path / "c", "bad", rank_by="speed"))
    assert info.value.field == "rank_by" and "decode_latency" in str(info.value)


def test_user_recipe_overrides_builtin_of_the_same_name(tmp_path: Path) -> None:
    builtin = load_recipes().get("llama-cpu-hqq8")
    mine = write(tmp_path, "llama-cpu-hqq8", priority=110, smash__hqq__weight_bits=4)
    book = load_recipes([tmp_path])
    recipe = book.get("llama-cpu-hqq8")
    assert recipe.source == mine and recipe.overrides == builtin.source and not recipe.builtin
    assert book.select({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, "cpu") is recipe
    assert len(book) == len(load_recipes())
    write(tmp_path / "second", "llama-cpu-hqq8")
    with pytest.raises(RecipeError) as info:
        load_recipes([tmp_path, tmp_path / "second"])
    assert info.value.field == "name" and "only a built-in recipe may be overridden" in str(info.value)


def test_missing_recipe_directory_and_name(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not a directory"):
        load_recipes([tmp_path / "nope"])
    with pytest.raises(NoRecipeError, match="llama-cpu-hqq8"):
        load_recipes().get("nope")


# --- content hash -----------------------------------------------------------------------------------------


def test_content_hash_follows_content_not_layout(tmp_path: Path) -> None:
    base = parse_recipe_file(write(tmp_path / "a", "r"))
    assert parse_recipe_file(write(tmp_path / "b", "r")).content_hash == base.content_hash
    reordered = dict(reversed(list(recipe_data().items())))
    reordered["smash"] = dict(reversed(list(reordered["smash"].items())))
    assert parse_recipe_file(write(tmp_path / "c", "r", data=reordered)).content_hash == base.content_hash
    cosmetic = parse_recipe_file(write(tmp_path / "d", "r", description="other words", priority=99))
    assert cosmetic.content_hash == base.content_hash
    explicit_default = parse_recipe_file(write(tmp_path / "e", "r", smash__hqq__axis=1))
    assert explicit_default.content_hash == base.content_hash  # defaults are resolved before hashing
    changed = [
        {"smash__hqq__weight_bits": 4},
        {"version": 2},
        {"quality_gate__max_kl": 0.06},
        {"evaluation__measured_runs": 3},
        {TEMPLATE: "{target_org}/{name}-other"},
        {"match__model_types": ["llama", "llama2"]},
    ]
    hashes = {
        parse_recipe_file(write(tmp_path / f"x{i}", "r", **c)).content_hash for i, c in enumerate(changed)
    }
    assert base.content_hash not in hashes and len(hashes) == len(changed)
    renamed = parse_recipe_file(write(tmp_path / "f", "renamed"))
    assert renamed.content_hash != base.content_hash
    assert len(base.content_hash) == 64 and int(base.content_hash, 16) >= 0


def test_content_hash_is_the_same_in_another_process(tmp_path: Path) -> None:
    path = BUILTIN_FILES[0]
    code = (
        "from pathlib import Path; import sys; from pruna_hub.recipes import parse_recipe_file; "
        "print(parse_recipe_file(Path(sys.argv[1])).content_hash)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == parse_recipe_file(path).content_hash


# --- gate, budget, repo names -----------------------------------------------------------------------------


def test_quality_gate_and_budget() -> None:
    gate = QualityGate(min_top1_agreement=0.95, max_kl=0.01)
    assert gate.failures({"top1_agreement": 0.98, "kl_mean": 0.0012}) == []
    assert gate.failures({"top1_agreement": 0.72, "kl_mean": 0.28}) == [
        "top-1 agreement 0.72 is not >= 0.95",
        "KL divergence 0.28 is not <= 0.01",
    ]
    assert gate.failures({"top1_agreement": 0.99}) == ["KL divergence was not measured (gate 0.01)"]
    assert gate.failures({"top1_agreement": float("nan"), "kl_mean": 0.0}) == [
        "top-1 agreement was not measured (gate 0.95)"
    ]
    generation = QualityGate(min_generation_agreement=1.0, max_decode_ratio=1.0)
    assert generation.failures_from({"generation_agreement": 1.0}, decode_ratio=0.5) == []
    assert generation.failures_from({"generation_agreement": 0.04}, decode_ratio=2.0) == [
        "greedy generation token agreement 0.04 is not >= 1",
        "decode latency ratio to the base 2 is not <= 1",
    ]
    budget = SizeBudget(max_parameters=1000)
    assert budget.exceeded(parameters=1000) is None
    assert budget.exceeded(parameters=1001) == "1,001 parameters exceed the budget of 1,000"
    assert SizeBudget(max_bytes=10).exceeded(nbytes=11) == "11 weight bytes exceed the budget of 10"


def test_repo_id_rendering(tmp_path: Path) -> None:
    recipe = parse_recipe_file(
        write(tmp_path, publish__repo_template="{target_org}/{author}-{name}-{recipe}")
    )
    assert recipe.repo_id("meta-llama/Llama-3.2-1B", target_org="PrunaAI") == (
        "PrunaAI/meta-llama-Llama-3.2-1B-test-recipe"
    )
    with pytest.raises(RecipeError, match="not a valid Hub repo id"):
        recipe.repo_id("org/" + "x" * 90, target_org="PrunaAI")


# --- CLI --------------------------------------------------------------------------------------------------


def test_cli_list_table_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["recipes", "list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DEVICE", "PRIORITY", "MATCHES", "ORDER", "HASH", "SOURCE"]
    assert {line.split()[0] for line in lines[1:]} == {p.stem for p in BUILTIN_FILES}
    result = runner.invoke(cli, ["recipes", "list", "--format", "json", "--device", "cuda"])
    listed = json.loads(result.stdout)
    assert {r["device"] for r in listed} == {"cuda"}
    assert {r["name"]: r["content_hash"] for r in listed} == {
        r.name: r.content_hash for r in load_recipes() if r.device == "cuda"
    }
    write(tmp_path, "llama-cpu-hqq8", priority=100, rank_by="decode_latency")
    result = runner.invoke(cli, ["recipes", "list", "--recipe-dir", str(tmp_path)])
    row = next(line for line in result.stdout.splitlines() if line.startswith("llama-cpu-hqq8 "))
    assert row.split()[-1] == "override"


def test_cli_show(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["recipes", "show", "llama-cpu-hqq8"])
    assert result.exit_code == 0, result.output
    assert "  1. hqq (weight_bits=8, group_size=64" in result.stdout
    assert "  3. torch_compile" in result.stdout
    recipe = load_recipes().get("llama-cpu-hqq8")
    assert f"content hash:  {recipe.content_hash}" in result.stdout
    shown = json.loads(runner.invoke(cli, ["recipes", "show", "llama-cpu-hqq8", "--format", "json"]).stdout)
    assert shown["content_hash"] == recipe.content_hash and shown["order"] == list(recipe.order)


def test_cli_check_reports_order_and_errors(tmp_path: Path) -> None:
    good = write(tmp_path / "good", "my-llama", priority=7)
    runner = CliRunner()
    result = runner.invoke(cli, ["recipes", "check", str(good.parent)])
    assert result.exit_code == 0, result.output
    assert f"ok  {good}: my-llama (cpu) hqq -> static_cache -> torch_compile" in result.stdout
    bad = write(tmp_path / "bad", "broken", smash__hqq__weight_bits=5)
    result = runner.invoke(cli, ["recipes", "check", str(good), str(bad)])
    assert result.exit_code == 1
    assert "ok  " in result.stdout
    assert f"recipe {bad}: smash.hqq.weight_bits" in result.stderr
    checked = json.loads(runner.invoke(cli, ["recipes", "check", "--format", "json", str(bad)]).stdout)
    assert checked == [
        {"path": str(bad), "ok": False, "field": "smash.hqq.weight_bits", "error": checked[0]["error"]}
    ]
    tie = write(tmp_path / "tie", "my-other-llama", priority=100)  # ties with the built-in llama-cpu-hqq8
    result = runner.invoke(cli, ["recipes", "check", str(tie)])
    assert result.exit_code == 1 and "llama-cpu-hqq8" in result.stderr and "priority" in result.stderr
    assert runner.invoke(cli, ["recipes", "check", "--no-builtin", str(tie)]).exit_code == 0


def test_cli_errors_become_one_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["recipes", "show", "no-such-recipe"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no recipe is named 'no-such-recipe'") and "Traceback" not in err
    write(tmp_path, "broken", device="tpu")
    with pytest.raises(SystemExit) as info:
        main(["recipes", "list", "--recipe-dir", str(tmp_path)])
    assert info.value.code == 1
    assert f"recipe {tmp_path / 'broken.toml'}: device" in capsys.readouterr().err
