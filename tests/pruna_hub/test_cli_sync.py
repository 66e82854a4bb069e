"""`pruna-hub sync --dry-run` changes nothing: no catalogue file, no migration, no timing store, nothing
smashed or compiled; a rank_by tie is named ("would time A against B"), not measured. The real entry point
runs in a subprocess against the local Hub store in a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi
from sync_support import publish_base, write_recipe, write_tied_recipes

from pruna_hub.hubstore import LocalHub
from registry_db.engine import create_catalogue_engine
from registry_db.migrate import head_revision, schema_status, upgrade
from registry_db.session import Catalogue


def pruna_hub(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    full_env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_DISABLE_XET": "1", **env}
    done = subprocess.run(
        [sys.executable, "-m", "pruna_hub.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    with LocalHub(root).install():
        publish_base(HfApi(), "acme/tiny-llama", tmp_path / "base")
    return root


def _dry_run(hub: Path, recipes: Path, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    args = ["sync", "--dry-run", "--local-hub", str(hub), "--recipe-dir", str(recipes), "--format", "json"]
    code, stdout, stderr = pruna_hub(*args, "--device", "cpu", env=env)
    return code, (json.loads(stdout) if code == 0 else {}), stderr


def test_a_dry_run_names_the_tie_and_writes_nothing(tmp_path: Path, hub: Path) -> None:
    home = tmp_path / "home"
    env = {"PRUNA_HUB_HOME": str(home), "PRUNA_HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'cat' / 'c.db'}"}

    code, data, stderr = _dry_run(hub, write_tied_recipes(tmp_path / "tied"), env)

    assert code == 0, stderr
    [decision] = data["decisions"]
    assert decision["action"] == "would_queue"
    assert "would time tiny-hqq8 against tiny-int8 by decode latency" in decision["detail"]
    assert "ranking" not in stderr  # the timing step (SyncContext.rank_recipes) never started
    assert not (tmp_path / "cat").exists()  # no catalogue, not even its folder
    assert not (home / "recipe-timings.json").exists()
    assert data["jobs"] == [] and data["published"] == []


def test_a_dry_run_reads_an_existing_catalogue_without_changing_it(tmp_path: Path, hub: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    env = {"PRUNA_HUB_HOME": str(tmp_path / "home"), "PRUNA_HUB_DATABASE_URL": url}
    recipes = write_recipe(tmp_path / "recipes")
    code, _, stderr = pruna_hub(
        "sync", "--schedule-only", "--local-hub", str(hub), "--recipe-dir", str(recipes), env=env
    )
    assert code == 0, stderr

    code, data, stderr = _dry_run(hub, recipes, env)

    assert code == 0, stderr
    assert [(d["action"], d["detail"]) for d in data["decisions"]] == [("seen", "job 1 is queued")]
    with Catalogue.open(url, read_only=True) as catalogue, catalogue.read_session() as session:
        assert session.connection().exec_driver_sql("SELECT count(*), max(state) FROM jobs").one() == (
            1,
            "queued",
        )


def test_a_dry_run_never_migrates(tmp_path: Path, hub: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_catalogue_engine(url)
    upgrade(engine, "0003")
    env = {"PRUNA_HUB_HOME": str(tmp_path / "home"), "PRUNA_HUB_DATABASE_URL": url}

    code, _, stderr = _dry_run(hub, write_recipe(tmp_path / "recipes"), env)

    assert code == 1 and "`pruna-hub db upgrade`" in stderr and "Traceback" not in stderr
    assert schema_status(engine).current == "0003" != head_revision()
    engine.dispose()
