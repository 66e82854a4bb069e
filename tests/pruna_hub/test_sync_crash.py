"""`pruna-hub sync` killed with SIGKILL at several stages, then run again: it completes without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from sync_support import publish_base, write_recipe

from pruna_hub.hubstore import LocalHub
from registry_db import Catalogue
from registry_db.models import Artifact, Job

TARGET = "PrunaAI/tiny-llama-smashed-test"
LEASE_SECONDS = 2


def _env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {
        "PRUNA_HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'catalogue.db'}",
        "PRUNA_HUB_WORK_DIR": str(tmp_path / "work"),
        "PRUNA_HUB_RECIPE_DIRS": str(tmp_path / "recipes"),
        "PRUNA_HUB_DEVICE": "cpu",
        "PRUNA_HUB_LEASE_SECONDS": str(LEASE_SECONDS),
        "PRUNA_HUB_RETRY_BASE_SECONDS": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_XET": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
    }


def _sync_command(tmp_path: Path) -> list[str]:
    code = "import sys; from pruna_hub.cli import main; main(sys.argv[1:])"
    return [sys.executable, "-c", code, "sync", "--once", "--local-hub", str(tmp_path / "hub")]


def _run_and_kill_at(tmp_path: Path, marker: str) -> bool:
    """Run the sync; SIGKILL it as soon as its progress shows ``marker``. True if it was killed."""
    process = subprocess.Popen(
        _sync_command(tmp_path),
        env=_env(tmp_path),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if marker in line:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
    process.wait()
    return False


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["smashing with", "publishing", "verifying"])
def test_sync_killed_at_a_stage_resumes_without_duplicates(tmp_path: Path, marker: str) -> None:
    write_recipe(tmp_path / "recipes")
    with LocalHub(tmp_path / "hub").install():
        revision = publish_base(HfApi(), "acme/tiny-llama", tmp_path / "base")

    assert _run_and_kill_at(tmp_path, marker), f"the sync never reached {marker!r}"
    time.sleep(LEASE_SECONDS + 0.5)  # the dead worker's lease expires
    finished = subprocess.run(
        _sync_command(tmp_path), env=_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr[-3000:]

    with Catalogue.open(_env(tmp_path)["PRUNA_HUB_DATABASE_URL"]) as catalogue, catalogue.read_session() as s:
        jobs = s.query(Job).all()
        artifacts = s.query(Artifact).all()
    assert [(j.state, j.attempts) for j in jobs] == [("published", 2)]
    assert [a.repo_id for a in artifacts] == [TARGET]
    assert artifacts[0].verified is True
    with LocalHub(tmp_path / "hub").install():
        refs = HfApi().list_repo_refs(TARGET)
        titles = [c.title for c in HfApi().list_repo_commits(TARGET)]
    assert [t.name for t in refs.tags] == [f"base-{revision}"]
    assert refs.tags[0].target_commit == artifacts[0].commit_sha
    assert sum(title.startswith("Smash acme/tiny-llama@") for title in titles) == 1
