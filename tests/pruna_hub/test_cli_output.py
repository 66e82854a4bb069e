"""What a user sees from `pruna-hub sync` and `worker`: short table output on stdout (one line per decision
and job outcome, the card, a summary), progress on stderr through logging with timestamps, `-q` silences
it, `--log-format json` makes every stderr line a JSON object, `--format json` parses, `--watch` reports
each pass as it ends, and no third-party deprecation warnings or progress bars. The real entry point runs
in subprocesses against the local Hub store in a folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi
from sync_support import publish_base, write_recipe

from pruna_hub.cli import cli
from pruna_hub.hubstore import LocalHub

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
SUMMARY = re.compile(r"^\d+ queued, \d+ skipped, \d+ published, \d+ failed")


def environment(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(root / "hf-home"),
        "PRUNA_HUB_HOME": str(root / "home"),
        "PRUNA_HUB_DATABASE_URL": f"sqlite:///{root / 'catalogue.db'}",
    }


def pruna_hub(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pruna_hub.cli", *args],
        capture_output=True,
        text=True,
        env=environment(root) | (env or {}),
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[str, ...], tuple[int, str, str]]:
    """One real sync that publishes the tiny base: (root, sync args, its result)."""
    root = tmp_path_factory.mktemp("output")
    with LocalHub(root / "hub").install():
        publish_base(HfApi(), "acme/tiny-llama", root / "base")
    recipes = write_recipe(root / "recipes")
    args = ("sync", "--local-hub", str(root / "hub"), "--recipe-dir", str(recipes), "--device", "cpu")
    return root, args, pruna_hub(root, *args)


def test_a_publishing_sync_prints_a_line_per_decision_and_job(published: Any) -> None:
    _, _, (code, stdout, stderr) = published
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 4, stdout  # decision, job outcome, card, summary
    assert "queued" in lines[0] and "job 1 published" in lines[1]
    assert lines[2].startswith("card of PrunaAI/tiny-llama-smashed-test: ") and lines[2].endswith("README.md")
    assert lines[3] == "1 queued, 0 skipped, 1 published, 0 failed"


def test_progress_is_logged_with_timestamps_and_no_third_party_noise(published: Any) -> None:
    _, _, (_, _, stderr) = published
    lines = stderr.splitlines()
    assert lines and all(STAMP.match(line) for line in lines), stderr
    for step in ("claimed", "downloading", "smashing", "evaluating", "publishing", "verifying"):
        assert any(f"job 1: {step}" in line for line in lines), (step, stderr)
    assert "past_key_values" not in stderr and "Warning" not in stderr
    assert "it/s" not in stderr and "%|" not in stderr  # no progress bars
    assert len(lines) < 15


def test_a_rerun_is_short_and_json_parses(published: Any) -> None:
    """Nothing new: at most the model's decision (``seen``, where discovery lists it again) and its card,
    then the summary."""
    root, args, _ = published
    code, stdout, stderr = pruna_hub(root, *args)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert 1 <= len(lines) <= 3, stdout
    assert lines[-1].startswith("0 queued, 0 skipped, 0 published, 0 failed"), stdout

    code, stdout, stderr = pruna_hub(root, *args, "--format", "json")
    assert code == 0, stderr
    data = json.loads(stdout)
    assert set(data) == {"counts", "decisions", "jobs", "published"}
    assert data["jobs"] == [] and set(data["counts"]) <= {"seen"}
    assert all(e["artifact"]["repo_id"] == "PrunaAI/tiny-llama-smashed-test" for e in data["published"])


def _fresh_dry_run(published: Any, tmp_path: Path, *flags: str) -> tuple[int, str, str]:
    """A dry run against a new catalogue: the published base is new to it, so there is a decision."""
    root, args, _ = published
    env = {"PRUNA_HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    return pruna_hub(root, *flags, *args, "--dry-run", env=env)


def test_quiet_silences_progress(published: Any, tmp_path: Path) -> None:
    code, stdout, stderr = _fresh_dry_run(published, tmp_path)
    assert code == 0 and "would_queue with tiny-llama" in stderr, stderr
    code, stdout, stderr = _fresh_dry_run(published, tmp_path, "-q")
    assert code == 0 and stderr == "", stderr
    assert "would_queue" in stdout and SUMMARY.match(stdout.splitlines()[-1])


def test_json_logs_parse(published: Any, tmp_path: Path) -> None:
    code, _, stderr = _fresh_dry_run(published, tmp_path, "--log-format", "json")
    assert code == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines()]
    assert records and all(set(r) == {"timestamp", "level", "logger", "message"} for r in records)
    assert {r["logger"] for r in records} == {"pruna_hub.sync"} and {r["level"] for r in records} == {"INFO"}
    assert any("would_queue with tiny-llama" in r["message"] for r in records)


def test_an_empty_pass_says_so_in_one_line(tmp_path: Path) -> None:
    args = ("sync", "--local-hub", str(tmp_path / "hub"), "--device", "cpu")
    code, stdout, stderr = pruna_hub(tmp_path, *args)
    assert code == 0, stderr
    assert stdout == "0 queued, 0 skipped, 0 published, 0 failed\n"


def test_worker_takes_the_database_url_and_the_local_hub(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    args = ("worker", "--exit-when-empty", "--database-url", url, "--local-hub", str(tmp_path / "hub"))
    code, stdout, stderr = pruna_hub(tmp_path, *args, "--device", "cpu")
    assert code == 0, stderr
    assert stdout == "0 queued, 0 skipped, 0 published, 0 failed\n"
    assert (tmp_path / "other.db").exists() and not (tmp_path / "catalogue.db").exists()


def test_watch_reports_each_pass_as_it_ends(tmp_path: Path) -> None:
    args = ["sync", "--watch", "--interval", "1", "--local-hub", str(tmp_path / "hub"), "--device", "cpu"]
    process = subprocess.Popen(
        [sys.executable, "-m", "pruna_hub.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(tmp_path),
    )
    try:
        assert process.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("pass 2 done" in line for line in seen):
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
        process.send_signal(signal.SIGTERM)
        stdout, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    stderr = "".join(seen) + rest
    assert process.returncode == 0, stderr
    done = [line for line in stderr.splitlines() if " done: " in line]
    assert len(done) >= 2 and all(STAMP.match(line) for line in done), stderr
    assert "pass 1 done: 0 queued, 0 skipped, 0 published, 0 failed" in done[0]
    assert stdout.splitlines()[:2] == ["0 queued, 0 skipped, 0 published, 0 failed"] * 2


@pytest.mark.parametrize(
    "args", [["-h"], ["sync", "-h"], ["worker", "-h"], ["catalogue", "export", "-h"], ["db", "upgrade", "-h"]]
)
def test_h_is_help_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


def test_shared_options_are_spelled_the_same_everywhere() -> None:
    def options(*path: str) -> set[str]:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, result.output
        return set(re.findall(r"--[a-z][a-z-]+", result.output))

    shared = {"--database-url", "--local-hub", "--format", "--device", "--recipe-dir", "--config"}
    for command in ("sync", "worker"):
        assert shared <= options(command), command
    assert "table|json|csv" in CliRunner().invoke(cli, ["catalogue", "export", "--help"]).output


def test_an_error_is_a_json_record_with_json_logs(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    code, _, stderr = pruna_hub(tmp_path, "--log-format", "json", "jobs", "list", "--database-url", missing)
    assert code == 1
    [record] = [json.loads(line) for line in stderr.splitlines()]
    assert record["level"] == "ERROR" and "pruna-hub db upgrade" in record["message"]
    code, _, stderr = pruna_hub(tmp_path, "jobs", "list", "--database-url", missing)
    assert code == 1 and stderr.startswith("error: ") and len(stderr.splitlines()) == 1
