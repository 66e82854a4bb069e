"""PrunaModel <-> a Hub (the local store, through the real huggingface_hub client), and untrusted repos."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import HfApi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from pruna_hub.hubstore import LocalHub, point_client_at
from smash import PrunaModel, SmashConfig, smash
from smash.errors import ArtifactError, InvalidRepoIdError, SmashConfigError, UnsafeArtifactError

IDS = torch.arange(0, 96, 3).reshape(2, 16)

LOAD_SCRIPT = """
import sys, torch
from safetensors.torch import save_file
from smash import PrunaModel
model = PrunaModel.from_pretrained(sys.argv[1], revision=sys.argv[2])
with torch.no_grad():
    logits = model(torch.arange(0, 96, 3).reshape(2, 16)).logits
save_file({"logits": logits.contiguous()}, sys.argv[3])
"""


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[LocalHub, HfApi]]:
    store = LocalHub(tmp_path / "store")  # open store: the tests are about content, not tokens
    with store.install(cache_dir=str(tmp_path / "cache")) as endpoint:
        yield store, HfApi(endpoint=endpoint)


@pytest.fixture
def smashed(tiny_llama: torch.nn.Module) -> PrunaModel:
    return smash(tiny_llama, SmashConfig({"half": {"dtype": "bfloat16"}}))


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def test_push_is_one_commit_and_loads_back_equal(hub: tuple[LocalHub, HfApi], smashed: PrunaModel) -> None:
    store, api = hub
    sha = smashed.push_to_hub("PrunaAI/tiny-llama-half")
    assert store.operations().count("commit") == 1
    files = {e.path: e for e in api.list_repo_tree("PrunaAI/tiny-llama-half", revision=sha, recursive=True)}
    assert {
        "README.md",
        "smash_config.json",
        "smash_artifact.json",
        "config.json",
        "model.safetensors",
    } <= set(files)
    assert files["model.safetensors"].lfs is not None  # went the LFS path (.gitattributes)
    loaded = PrunaModel.from_pretrained("PrunaAI/tiny-llama-half", revision=sha)
    assert loaded.smash_config == smashed.smash_config
    assert torch.equal(logits(loaded), logits(smashed))
    assert smashed.push_to_hub("PrunaAI/tiny-llama-half") == sha  # nothing changed: no new commit
    assert store.operations().count("commit") == 1


def test_push_to_a_branch_with_a_card_replaces_stale_files(
    hub: tuple[LocalHub, HfApi], smashed: PrunaModel
) -> None:
    _, api = hub
    api.create_repo("PrunaAI/branchy")
    api.upload_file(path_or_fileobj=b"old", path_in_repo="stale.txt", repo_id="PrunaAI/branchy")
    card = "---\nlicense: apache-2.0\n---\n# Custom card\n"
    sha = smashed.push_to_hub("PrunaAI/branchy", revision="dev", card=card, commit_message="to dev")
    files = api.list_repo_files("PrunaAI/branchy", revision="dev")
    assert "stale.txt" not in files and "model.safetensors" in files  # the branch holds exactly the model
    assert "stale.txt" in api.list_repo_files("PrunaAI/branchy")  # main untouched
    assert api.list_repo_commits("PrunaAI/branchy", revision="dev")[0].title == "to dev"
    assert api.model_info("PrunaAI/branchy", revision="dev").card_data.license == "apache-2.0"  # type: ignore[union-attr]
    assert torch.equal(logits(PrunaModel.from_pretrained("PrunaAI/branchy", revision=sha)), logits(smashed))


@pytest.mark.slow
def test_round_trip_in_a_fresh_process_over_http(tmp_path: Path, smashed: PrunaModel) -> None:
    store = LocalHub(tmp_path / "store")
    with store.serve() as endpoint:
        with point_client_at(endpoint, cache_dir=str(tmp_path / "pusher-cache")):
            sha = smashed.push_to_hub("PrunaAI/tiny-llama-half")
        env = {
            **os.environ,
            "HF_ENDPOINT": endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(tmp_path / "hf"),
        }
        subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT, "PrunaAI/tiny-llama-half", sha, str(tmp_path / "a.st")],
            env=env,
            check=True,
            timeout=300,
        )
    # the store is down now: the same repo loads from the cache with HF_HUB_OFFLINE=1
    subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, "PrunaAI/tiny-llama-half", sha, str(tmp_path / "b.st")],
        env={**env, "HF_HUB_OFFLINE": "1"},
        check=True,
        timeout=300,
    )
    expected = logits(smashed)
    assert torch.equal(load_file(tmp_path / "a.st")["logits"], expected)
    assert torch.equal(load_file(tmp_path / "b.st")["logits"], expected)


def _publish_folder(api: HfApi, repo_id: str, folder: Path) -> str:
    api.create_repo(repo_id, exist_ok=True)
    return str(api.upload_folder(folder_path=folder, repo_id=repo_id).oid)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"format_version": 1, "algorithms": {"no_such_algorithm": {}}}, "unknown algorithm"),
        (
            {"format_version": 1, "algorithms": {"os.system": {"command": "touch /tmp/pwned"}}},
            "unknown algorithm",
        ),
        ({"format_version": 1, "algorithms": {"smash.algorithms.half.Half": {}}}, "unknown algorithm"),
        ({"format_version": 99, "algorithms": {"half": {}}}, "format_version 99"),
        ({"format_version": 1, "algorithms": {}, "__class__": "os.system"}, "unexpected field"),
        ({"format_version": 1, "algorithms": {"half": {"dtype": "float64", "x": 1}}}, "half.x"),
    ],
)
def test_malicious_smash_config_is_a_typed_error(
    hub: tuple[LocalHub, HfApi], smashed: PrunaModel, tmp_path: Path, config: dict[str, Any], expected: str
) -> None:
    _, api = hub
    folder = smashed.save_pretrained(tmp_path / "evil")
    (folder / "smash_config.json").write_text(json.dumps(config))
    sha = _publish_folder(api, "attacker/evil", folder)
    with pytest.raises(SmashConfigError, match=expected):
        PrunaModel.from_pretrained("attacker/evil", revision=sha)


def test_corrupt_safetensors_is_an_artifact_error(
    hub: tuple[LocalHub, HfApi], smashed: PrunaModel, tmp_path: Path
) -> None:
    _, api = hub
    folder = smashed.save_pretrained(tmp_path / "corrupt")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])  # truncated tensor data
    sha = _publish_folder(api, "attacker/corrupt", folder)
    with pytest.raises(ArtifactError, match="not a readable safetensors") as e:
        PrunaModel.from_pretrained("attacker/corrupt", revision=sha)
    assert not isinstance(e.value, UnsafeArtifactError)
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)  # garbage header
    sha = _publish_folder(api, "attacker/corrupt", folder)
    with pytest.raises(ArtifactError, match="not a readable safetensors"):
        PrunaModel.from_pretrained("attacker/corrupt", revision=sha)


def test_pickle_only_repo_is_refused_without_downloading_the_pickle(
    hub: tuple[LocalHub, HfApi], smashed: PrunaModel, tmp_path: Path
) -> None:
    store, api = hub
    folder = smashed.save_pretrained(tmp_path / "pickle")
    (folder / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    sha = _publish_folder(api, "attacker/pickle", folder)
    store.app.clear_calls()
    with pytest.raises(UnsafeArtifactError, match=r"pytorch_model\.bin"):
        PrunaModel.from_pretrained("attacker/pickle", revision=sha)
    assert not any(c.path.endswith("pytorch_model.bin") for c in store.calls)  # never fetched
    with pytest.raises(UnsafeArtifactError):  # the same folder, loaded locally
        PrunaModel.from_pretrained(folder)


@pytest.mark.parametrize(
    "repo_id", ["not a repo", "a/b/c", "../../etc/passwd", "org/name--x", "-org/name", "org/"]
)
def test_invalid_repo_id_is_refused_before_any_request(
    hub: tuple[LocalHub, HfApi], smashed: PrunaModel, repo_id: str
) -> None:
    store, _ = hub
    with pytest.raises(InvalidRepoIdError):
        PrunaModel.from_pretrained(repo_id)
    with pytest.raises(InvalidRepoIdError):
        smashed.push_to_hub(repo_id)
    assert store.calls == []


def test_missing_repo_is_an_artifact_error(hub: tuple[LocalHub, HfApi]) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        PrunaModel.from_pretrained("PrunaAI/nothing-here")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
NAMES = st.sampled_from(
    ["half", "hqq", "int8", "torch_compile", "static_cache", "magnitude_pruning", "os.system"]
)
CONFIG_LIKE = st.fixed_dictionaries(
    {
        "format_version": st.one_of(st.just(1), JSON),
        "algorithms": st.dictionaries(NAMES | st.text(max_size=8), JSON, max_size=3),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(JSON, CONFIG_LIKE))
def test_arbitrary_json_gives_only_typed_config_errors(data: Any) -> None:
    with contextlib.suppress(SmashConfigError):
        SmashConfig.from_dict(data)
    with contextlib.suppress(SmashConfigError):
        SmashConfig.from_json(json.dumps(data))


@given(text=st.text(max_size=60) | st.binary(max_size=60))
@settings(max_examples=200, deadline=None)
def test_arbitrary_text_gives_only_typed_config_errors(text: str | bytes) -> None:
    with contextlib.suppress(SmashConfigError):
        SmashConfig.from_json(text)
