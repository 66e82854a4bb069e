"""Malformed model folders: whatever config.json, smash_config.json or smash_artifact.json hold, loading
either succeeds or raises a typed ``SmashError``, and nothing the config asks for is allocated first."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import build_tiny_llama

from smash import PrunaModel, SmashConfig, smash
from smash.architectures import DEFAULT_MAX_PARAMETERS, MAX_JSON_DEPTH, MAX_PARAMETERS_ENV, MIN_MODULES
from smash.errors import ArtifactError, LoadSettingError, ModelTooLargeError, RemoteCodeError, SmashError

FILES = ("config.json", "smash_config.json", "smash_artifact.json")
DEEP = 100_000  # far past the JSON parser's recursion limit
NEST = "\x00nest\x00"  # placeholder replaced, after json.dumps, by a value nested DEEP lists down
RECIPES = {"half": {"half": {"dtype": "bfloat16"}}, "int8": {"int8_weight": {}}}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One folder per recipe, written by save_pretrained; tests copy them before changing anything."""
    root = tmp_path_factory.mktemp("saved")
    return {
        name: smash(build_tiny_llama(), SmashConfig(recipe)).save_pretrained(root / name)
        for name, recipe in RECIPES.items()
    }


@pytest.fixture
def half(saved: dict[str, Path], tmp_path: Path) -> Path:
    return copy_folder(saved["half"], tmp_path / "half")


def copy_folder(source: Path, target: Path) -> Path:
    """A copy of the JSON files; the weights are hard-linked (no test writes them)."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.suffix == ".safetensors":
            os.link(item, target / item.name)
        else:
            shutil.copy(item, target / item.name)
    return target


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def elements(model: torch.nn.Module) -> int:
    return sum(t.numel() for t in chain(model.parameters(), model.buffers()))


# --- the cases that escaped as untyped exceptions ---------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 900, DEEP])  # under, around and past the parser's limit
@pytest.mark.parametrize("name", FILES)
def test_deeply_nested_json_is_an_artifact_error(half: Path, name: str, depth: int) -> None:
    (half / name).write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(ArtifactError) as e:
        PrunaModel.from_pretrained(half)
    assert str(e.value) == (
        f"{half}: {name} nests its JSON more than 64 levels deep. "
        "Re-save the model with save_pretrained, or re-download it."
    )
    assert depth < DEEP or isinstance(e.value.__cause__, RecursionError)


def test_json_nested_as_deep_as_allowed_is_read(half: Path) -> None:
    edit_json(half / "config.json", extra=json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)))
    assert isinstance(PrunaModel.from_pretrained(half), PrunaModel)


@pytest.mark.parametrize("key", ["torch_dtype", "dtype"])
@pytest.mark.parametrize("value", ["nn", "Tensor", "no_such_dtype", 16, ["float16"], {"text": "nn"}])
def test_a_dtype_that_is_not_a_dtype_is_named(half: Path, key: str, value: Any) -> None:
    edit_json(half / "config.json", **{key: value})
    with pytest.raises(ArtifactError) as e:
        PrunaModel.from_pretrained(half)
    assert e.value.problem == f"config.json {key} {value!r} is not a torch dtype"
    assert str(e.value).endswith("Use a dtype name such as 'float32' or 'bfloat16', or remove " + f"{key}.")


def test_real_dtype_names_still_load(half: Path) -> None:
    edit_json(half / "config.json", torch_dtype="float16", dtype="bfloat16")
    assert isinstance(PrunaModel.from_pretrained(half), PrunaModel)


def test_a_string_hidden_size_is_an_artifact_error(half: Path) -> None:
    edit_json(half / "config.json", hidden_size="64")
    with pytest.raises(ArtifactError) as e:
        PrunaModel.from_pretrained(half)
    assert e.value.problem.startswith("config.json cannot be read (Validation error for field 'hidden_size'")
    assert "\n" not in str(e.value)
    assert isinstance(e.value.__cause__, StrictDataclassFieldValidationError)


@pytest.mark.parametrize("value", [["llama"], {"llama": 1}, 3, None, "no-such-type"])
def test_a_model_type_that_is_not_a_name_is_an_artifact_error(half: Path, value: Any) -> None:
    edit_json(half / "config.json", model_type=value)
    with pytest.raises(ArtifactError) as e:
        PrunaModel.from_pretrained(half)
    assert e.value.problem == f"config.json model_type {value!r} is not a model type transformers ships"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"vocab_size": 10**10}, 10**10 * 64 * 2),  # untied head: 1.28e12 parameters, 5 TB in float32
        ({"intermediate_size": 10**12}, 10**12 * 64 * 3 * 2),  # 3.8e14: the 1.4 PB allocation reported
    ],
)
def test_a_config_over_the_budget_is_refused_before_allocating(
    half: Path, changes: dict[str, int], expected: int
) -> None:
    edit_json(half / "config.json", tie_word_embeddings=False, **changes)
    with pytest.raises(ModelTooLargeError) as e:
        PrunaModel.from_pretrained(half)
    assert (e.value.unit, e.value.limit) == ("parameters", DEFAULT_MAX_PARAMETERS)
    assert expected < e.value.count < expected * 1.01  # the rest: norms, attention, the other matrices
    assert e.value.problem == (
        f"config.json describes a model of {e.value.count:,} parameters, over the limit of 20,000,000,000"
    )
    assert str(e.value).endswith("raise the limit with SMASH_MAX_PARAMETERS.")


def test_the_budget_counts_every_parameter_and_buffer(
    half: Path, saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    size = elements(PrunaModel.from_pretrained(saved["half"]).model)
    monkeypatch.setenv(MAX_PARAMETERS_ENV, str(size - 1))
    with pytest.raises(ModelTooLargeError) as e:
        PrunaModel.from_pretrained(half)
    assert (e.value.count, e.value.limit) == (size, size - 1)
    monkeypatch.setenv(MAX_PARAMETERS_ENV, f"{size:.6e}")  # "1.068320e+05": a float spelling is accepted
    assert isinstance(PrunaModel.from_pretrained(half), PrunaModel)


def test_within_budget_but_beyond_this_machine_is_an_artifact_error(
    half: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_PARAMETERS_ENV, "1e13")
    edit_json(half / "config.json", tie_word_embeddings=False, vocab_size=10**10)  # 5 TB of float32
    with pytest.raises(ArtifactError) as e:  # the allocator refuses, or the saved tensors do not fit
        PrunaModel.from_pretrained(half)
    assert not isinstance(e.value, ModelTooLargeError)
    assert e.value.problem.startswith(
        ("the model described by config.json cannot be built", "the saved tensors do not fit")
    )


@pytest.mark.parametrize("raw", ["lots", "0", "-5", "nan", "inf"])
def test_a_bad_budget_setting_is_named(half: Path, monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(MAX_PARAMETERS_ENV, raw)
    with pytest.raises(LoadSettingError, match=f"SMASH_MAX_PARAMETERS={raw!r} is not valid"):
        PrunaModel.from_pretrained(half)


def test_millions_of_layers_are_refused_while_counting(half: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_PARAMETERS_ENV, "1e9")  # the module limit follows the budget: MIN_MODULES here
    edit_json(half / "config.json", num_hidden_layers=10**9)
    with pytest.raises(ModelTooLargeError) as e:
        PrunaModel.from_pretrained(half)
    assert (e.value.unit, e.value.limit) == ("modules", MIN_MODULES)
    assert e.value.problem == (
        f"config.json describes a model of at least {MIN_MODULES + 1:,} modules, over the limit of "
        f"{MIN_MODULES:,}"
    )


def test_tokenizer_auto_map_is_refused_and_its_code_never_imported(half: Path, tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    (half / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (half / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}})
    )
    with pytest.raises(RemoteCodeError) as e:
        PrunaModel.from_pretrained(half)
    assert str(e.value) == (
        f"{half}: tokenizer_config.json asks for remote code (auto_map). Remote code is never run: only "
        "models whose classes and tokenizer transformers ships load."
    )
    assert e.value.file == "tokenizer_config.json"
    assert not marker.exists()


def test_config_auto_map_is_a_remote_code_error(half: Path) -> None:
    edit_json(half / "config.json", auto_map={"AutoModelForCausalLM": "modeling_evil.Evil"})
    with pytest.raises(RemoteCodeError) as e:
        PrunaModel.from_pretrained(half)
    assert e.value.file == "config.json"


def test_an_int8_layer_record_larger_than_its_linear_is_an_artifact_error(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy_folder(saved["int8"], tmp_path / "int8")
    artifact = json.loads((folder / "smash_artifact.json").read_text())
    layers = artifact["metadata"]["int8_weight"]["layers"]
    layers[next(iter(layers))]["in"] = 10**12
    (folder / "smash_artifact.json").write_text(json.dumps(artifact))
    with pytest.raises(ArtifactError):
        PrunaModel.from_pretrained(folder)


# --- property: any mutation of the three JSON files ------------------------------------------------------

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 10**12, 2**63, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["llama", "LlamaForCausalLM", "float16", "nn", "half", "int8_weight", "layers"])
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
)
OPERATIONS = st.sampled_from(["replace", "delete", "nest", "add"])
# (recipe, file) pairs
MUTATED = [(r, f) for r in sorted(RECIPES) for f in FILES]


def _mutate(node: Any, data: st.DataObject) -> Any:
    """``node`` with one value somewhere inside it replaced, removed, nested deeply or given a sibling."""
    children = (
        list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
    )
    if children and data.draw(st.booleans(), label="descend"):
        key = data.draw(st.sampled_from(children), label="key")
        operation = data.draw(OPERATIONS, label="operation")
        if operation == "replace" and isinstance(node[key], dict | list) and data.draw(st.booleans()):
            node[key] = _mutate(node[key], data)
        elif operation == "replace":
            node[key] = data.draw(VALUES, label="value")
        elif operation == "delete":
            del node[key]
        elif operation == "nest":
            node[key] = NEST
        elif isinstance(node, dict):
            node[data.draw(st.text(max_size=12), label="new key")] = data.draw(VALUES, label="new value")
        return node
    return data.draw(VALUES, label="whole value") if not children else node


def _write(path: Path, document: Any) -> None:
    text = json.dumps(document)  # NaN and Infinity included: Python's json reads them back
    path.write_text(text.replace(json.dumps(NEST), "[" * DEEP + "0" + "]" * DEEP))


@contextmanager
def scratch_copy(source: Path) -> Iterator[Path]:
    """A fresh copy per hypothesis example (the function-scoped tmp_path is shared by all of them)."""
    with tempfile.TemporaryDirectory() as root:
        yield copy_folder(source, Path(root) / "model")


@pytest.fixture(scope="module")
def small_budget() -> Iterator[None]:
    """A budget that keeps refusals quick: a config asking for a billion layers stops at MIN_MODULES."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MAX_PARAMETERS_ENV, "1e9")
        yield


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(MUTATED), data=st.data())
def test_any_mutated_folder_loads_or_raises_a_typed_error(
    saved: dict[str, Path], small_budget: None, case: tuple[str, str], data: st.DataObject
) -> None:
    recipe, name = case
    with scratch_copy(saved[recipe]) as folder:
        path = folder / name
        document = json.loads(path.read_text())
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            document = _mutate(document, data)
        _write(path, document)
        try:
            loaded = PrunaModel.from_pretrained(folder)
        except SmashError:
            return
        assert isinstance(loaded.model, torch.nn.Module)
