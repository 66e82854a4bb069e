"""Exit codes as a script or supervisor sees them: the real `pruna-hub` entry point in a subprocess.

One code per kind of failure (``pruna_hub.errors.ExitCode``, tabled in the README): bad input 2, a failed
job 3, a failed quality gate 4, a Hub that does not answer 5; everything else 1, as one line on stderr and
never a traceback unless ``--debug``."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from sync_support import publish_base, write_recipe

from pruna_hub.errors import ExitCode
from pruna_hub.hubstore import LocalHub


def pruna_hub(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, str, str]:
    """``python -m pruna_hub.cli ARGS``; (exit code, stdout, stderr)."""
    full_env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_DISABLE_XET": "1", **(env or {})}
    full_env.pop("PRUNA_HUB_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "pruna_hub.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_the_codes_are_distinct_and_bad_input_is_clicks_usage_code() -> None:
    import click

    assert ExitCode.USAGE == click.UsageError.exit_code == 2
    assert len({int(c) for c in ExitCode}) == len(ExitCode)


def test_bad_input_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    for args in (
        ("catalogue", "best", "--metric", "no_such_metric", "--database-url", url),
        ("catalogue", "list", "--sort", "no_such_metric", "--database-url", url),
        ("jobs", "list", "--state", "done", "--database-url", url),
        ("catalogue", "list", "--database-url", "mysql://root@127.0.0.1/x"),
    ):
        code, stdout, stderr = pruna_hub(*args)
        assert (code, stdout) == (ExitCode.USAGE, ""), stderr
        assert "Traceback" not in stderr
    code, _, stderr = pruna_hub("recipes", "check", str(tmp_path / "empty"))
    assert code == ExitCode.USAGE and "no recipe files" in _one_error_line(stderr)
    assert not (tmp_path / "c.db").exists()


def test_a_read_only_command_creates_nothing_and_exits_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nonexistent' / 'dir' / 'x.db'}"
    for args in (("catalogue", "list"), ("jobs", "show", "1"), ("db", "current")):
        code, _, stderr = pruna_hub(*args, "--database-url", url)
        line = _one_error_line(stderr)
        assert code == ExitCode.ERROR and "nonexistent/dir/x.db" in line and "pruna-hub db upgrade" in line
    assert not (tmp_path / "nonexistent").exists()


class _GarbageHub(http.server.BaseHTTPRequestHandler):
    """Answers every request with a truncated JSON body: a Hub that is up but not answering properly."""

    def do_GET(self) -> None:  # http.server's name for the GET handler
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'[{"id": "acme/')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def garbage_hub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GarbageHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_hub_that_does_not_answer_exits_5(tmp_path: Path, garbage_hub: str) -> None:
    env = {"HF_ENDPOINT": garbage_hub, "PRUNA_HUB_HOME": str(tmp_path / "home")}
    env["PRUNA_HUB_DATABASE_URL"] = f"sqlite:///{tmp_path / 'c.db'}"
    code, stdout, stderr = pruna_hub("sync", "--once", "--device", "cpu", env=env)
    assert code == ExitCode.HUB_UNREACHABLE and stdout == ""
    assert _one_error_line(stderr).startswith("error: hub list_models: connection or answer broken")


def test_a_hub_that_refuses_connections_exits_5(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "PRUNA_HUB_HOME": str(tmp_path / "home")}
    env["PRUNA_HUB_DATABASE_URL"] = f"sqlite:///{tmp_path / 'c.db'}"
    code, stdout, stderr = pruna_hub("sync", "--once", "--device", "cpu", env=env, timeout=120)
    assert code == ExitCode.HUB_UNREACHABLE and stdout == ""
    assert "cannot be reached" in _one_error_line(stderr) and "HF_ENDPOINT" in stderr


def _local_hub_with_a_base(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    with LocalHub(root).install():
        publish_base(HfApi(), "acme/tiny-llama", tmp_path / "base")
    return root


def test_a_failed_job_exits_3_and_names_the_retry_command(tmp_path: Path) -> None:
    hub = _local_hub_with_a_base(tmp_path)
    env = {
        "PRUNA_HUB_HOME": str(tmp_path / "home"),
        "PRUNA_HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
    }
    recipes = write_recipe(tmp_path / "recipes")
    code, _, stderr = pruna_hub(
        "sync", "--schedule-only", "--local-hub", str(hub), "--recipe-dir", str(recipes), env=env
    )
    assert code == ExitCode.OK, stderr
    # The worker does not load that recipe: the queued job cannot run as planned (JobPlanError).
    code, stdout, stderr = pruna_hub("worker", "--exit-when-empty", "--device", "cpu", env=env)
    assert code == ExitCode.JOB_FAILED and "JobPlanError" in stdout
    line = _one_error_line(stderr)
    assert line.startswith("error: 1 job failed (1)") and "`pruna-hub jobs retry 1 --reason" in line


def test_a_failed_quality_gate_exits_4(tmp_path: Path) -> None:
    hub = _local_hub_with_a_base(tmp_path)
    env = {
        "PRUNA_HUB_HOME": str(tmp_path / "home"),
        "PRUNA_HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
    }
    harsh = write_recipe(tmp_path / "harsh", bits=2, gate=0.999)
    code, stdout, stderr = pruna_hub(
        "sync", "--once", "--local-hub", str(hub), "--recipe-dir", str(harsh), "--device", "cpu", env=env
    )
    assert code == ExitCode.QUALITY_GATE, stderr
    assert "QualityGateError" in stdout
    assert "failed on the quality gate (nothing published)" in _one_error_line(stderr)


def test_a_busy_port_is_one_line_and_exit_1_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        code, stdout, stderr = pruna_hub("hub", "serve", "--root", str(tmp_path / "store"), "--port", port)
        assert code == ExitCode.ERROR and stdout == "" and "serving" not in stderr
        assert f"cannot serve on 127.0.0.1:{port}" in _one_error_line(stderr)
        code, _, stderr = pruna_hub(
            "--debug", "hub", "serve", "--root", str(tmp_path / "store"), "--port", port
        )
        assert code == ExitCode.ERROR and "Traceback" in stderr and "ServeError" in stderr


def test_any_os_error_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {"PRUNA_HUB_HOME": str(blocker / "home"), "PRUNA_HUB_DATABASE_URL": ""}
    code, _, stderr = pruna_hub("db", "upgrade", env=env)
    line = _one_error_line(stderr)
    assert code == ExitCode.ERROR and "Not a directory" in line and "--debug" in line


def test_which_failures_a_run_ends_with() -> None:
    from pruna_hub.errors import GateFailedError, JobsFailedError
    from pruna_hub.sync.job import JobOutcome
    from pruna_hub.sync.service import failures

    published = JobOutcome(1, state="published")
    gate = JobOutcome(2, state="failed", error="QualityGateError: quality gate of recipe 'x' failed")
    handed_over = JobOutcome(3, state="failed", error="QualityGateError: ...", next_job_id=4)
    crashed = JobOutcome(5, state="failed", error="RuntimeError: boom")
    requeued = JobOutcome(6, state="queued", error="HubTransientError: 503")

    assert failures([published, handed_over, requeued]) is None  # the tie's next recipe has the base
    only_gate = failures([published, gate, handed_over])
    assert type(only_gate) is GateFailedError and only_gate.job_ids == [2]
    assert only_gate.exit_code == ExitCode.QUALITY_GATE
    mixed = failures([gate, crashed])
    assert (
        type(mixed) is JobsFailedError and mixed.job_ids == [2, 5] and mixed.exit_code == ExitCode.JOB_FAILED
    )
