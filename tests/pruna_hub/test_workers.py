"""Many `pruna-hub worker` processes on one catalogue and one store: each job done once, crashes survived.

Workers are real subprocesses of the CLI; the store is served on a loopback port that they all share; the
catalogue is a real SQLite file or the PostgreSQL server of this machine. Only the model steps (load,
smash, evaluate) are a stand-in, and only partly: the base is loaded and smashed for real, the evaluation
report is canned (tests/pruna_hub/worker_support.py). Claiming, leasing, recording, publishing and
verifying are the service's own code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi
from sync_support import publish_base, write_recipe
from worker_support import (
    ENV_CRASH_DIR,
    ENV_HOLD,
    ENV_REPORT,
    canned_report,
    publish_bases,
    queue_jobs,
    worker_command,
)

from pruna_hub.hubstore import LocalHub
from pruna_hub.recipes import Recipe, load_recipes
from registry_db import Catalogue
from registry_db.models import Artifact, BenchmarkRun, Job

# End to end (claim, download, smash, record, publish, verify) each job costs a worker ~1 s here, so the
# drains use 60 jobs (15 per PostgreSQL worker) to keep the suite's time; the claim race itself is tested
# with 200 jobs in tests/registry_db/test_catalogue_jobs.py, and benchmarks/worker_throughput.py drains more.
JOBS = 60
WORKERS = {"postgresql": 4, "sqlite": 2}
WORKER_TIMEOUT_S = 900


@dataclass(frozen=True)
class Store:
    hub: LocalHub
    endpoint: str
    root: Path

    def api(self) -> HfApi:
        return HfApi(endpoint=self.endpoint)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("store")
    hub = LocalHub(root / "hub")
    with hub.serve() as endpoint:
        yield Store(hub, endpoint, root)


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("recipes"))


@pytest.fixture(scope="module")
def recipe(recipe_dir: Path) -> Recipe:
    return load_recipes([recipe_dir]).get("tiny-llama")


@pytest.fixture(scope="module")
def report_path(recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The canned evaluation: one real evaluate() of a tiny Llama against its 8-bit hqq copy."""
    work = tmp_path_factory.mktemp("canned")
    path = work / "report.json"
    path.write_text(canned_report(recipe, work))
    return path


@pytest.fixture(scope="module")
def many_bases(store: Store) -> dict[str, str]:
    """JOBS base repos in the store (one tiny Llama each), shared by the backends' runs."""
    return publish_bases(store.api(), [f"acme/m{i:03d}" for i in range(JOBS)], store.root / "base")


def worker_env(
    tmp_path: Path, store: Store, db_url: str, namespace: str, recipe_dir: Path, **extra: str
) -> dict[str, str]:
    """A worker's environment: the served store, the catalogue, a target org of this test's own."""
    return os.environ | {
        "HF_ENDPOINT": store.endpoint,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_XET": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "PRUNA_HUB_DATABASE_URL": db_url,
        "PRUNA_HUB_NAMESPACE": namespace,
        "PRUNA_HUB_TARGET_ORG": f"org{namespace.replace('-', '')[-12:]}",
        "PRUNA_HUB_RECIPE_DIRS": str(recipe_dir),
        "PRUNA_HUB_WORK_DIR": str(tmp_path / "work"),
        "PRUNA_HUB_DEVICE": "cpu",
        "PRUNA_HUB_RETRY_BASE_SECONDS": "0",
        **extra,
    }


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        worker_command("worker", "--format", "json", *args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`pytest &`) runs with SIGINT ignored, which children
        # inherit, and Python then installs no KeyboardInterrupt handler: give the worker the default.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(
    process: subprocess.Popen[str], timeout: float = WORKER_TIMEOUT_S
) -> tuple[int, dict[str, Any], str]:
    """Wait for a worker; its exit code, its JSON summary and the tail of its progress output."""
    out, err = process.communicate(timeout=timeout)
    summary = json.loads(out) if process.returncode == 0 and out.strip() else {}
    return process.returncode, summary, err[-3000:]


def wait_for_line(process: subprocess.Popen[str], marker: str, log: list[str]) -> bool:
    """Read the worker's progress until ``marker`` shows up (True) or the process ends (False)."""
    assert process.stderr is not None
    for line in process.stderr:
        log.append(line)
        if marker in line:
            return True
    return False


def signal_mid_job(worker: subprocess.Popen[str], sig: signal.Signals) -> str:
    """Wait until ``worker`` is evaluating its job, send it ``sig``; return what it printed until then."""
    log: list[str] = []
    assert wait_for_line(worker, "evaluating against the base", log), "".join(log)[-3000:]
    worker.send_signal(sig)
    return "".join(log)


def jobs_of(catalogue: Catalogue) -> list[Job]:
    with catalogue.read_session() as session:
        return session.query(Job).filter(Job.namespace == catalogue.namespace).order_by(Job.id).all()


def artifacts_of(catalogue: Catalogue, job_ids: list[int]) -> list[Artifact]:
    with catalogue.read_session() as session:
        return session.query(Artifact).filter(Artifact.job_id.in_(job_ids)).all()


def assert_published_once(store: Store, repo_id: str, revision: str, base_repo_id: str) -> str:
    """One tag (the base revision) and one "Smash ..." commit in the target repo; returns the tag's target."""
    api = store.api()
    tags = api.list_repo_refs(repo_id).tags
    assert [t.name for t in tags] == [f"base-{revision}"], repo_id
    titles = [c.title for c in api.list_repo_commits(repo_id)]
    assert sum(t.startswith(f"Smash {base_repo_id}@{revision}") for t in titles) == 1, titles
    assert len([t for t in titles if t.startswith("Smash ")]) == 1, titles
    return str(tags[0].target_commit)


# --- many workers draining one queue ----------------------------------------------------------------------


@pytest.mark.slow
def test_workers_drain_the_queue_each_job_done_exactly_once(
    backend: str,
    db_url: str,
    namespace: str,
    tmp_path: Path,
    store: Store,
    recipe_dir: Path,
    recipe: Recipe,
    report_path: Path,
    many_bases: dict[str, str],
) -> None:
    with Catalogue.open(db_url, namespace=namespace) as catalogue:
        job_ids = queue_jobs(catalogue, recipe, many_bases)
    env = worker_env(tmp_path, store, db_url, namespace, recipe_dir, **{ENV_REPORT: str(report_path)})

    started = time.perf_counter()
    workers = [start_worker(env, "--exit-when-empty") for _ in range(WORKERS[backend])]
    results = [finish(w) for w in workers]
    elapsed = time.perf_counter() - started

    for code, _, err in results:
        assert code == 0, err
    ran = [[job["job_id"] for job in summary["jobs"]] for _, summary, _ in results]
    assert sorted(j for r in ran for j in r) == sorted(job_ids)  # every job run by exactly one worker
    assert all(ran), f"a worker ran no job: {[len(r) for r in ran]}"
    with Catalogue.open(db_url, namespace=namespace) as catalogue:
        jobs = jobs_of(catalogue)
        artifacts = artifacts_of(catalogue, job_ids)
    assert {(j.state, j.attempts, j.lease_owner) for j in jobs} == {("published", 1, None)}
    assert sorted(a.job_id or 0 for a in artifacts) == sorted(job_ids)
    assert all(a.verified for a in artifacts)
    org = env["PRUNA_HUB_TARGET_ORG"]
    by_repo = {a.repo_id: a for a in artifacts}
    assert len(by_repo) == JOBS
    for base_repo_id, revision in many_bases.items():
        repo_id = f"{org}/{base_repo_id.split('/')[1]}-smashed-test"
        assert assert_published_once(store, repo_id, revision, base_repo_id) == by_repo[repo_id].commit_sha
    print(
        f"{backend}: {JOBS} jobs, {len(workers)} workers, {elapsed:.1f} s, per worker {[len(r) for r in ran]}"
    )


# --- a worker killed or stopped mid-job ---------------------------------------------------------------------


def one_job(
    store: Store, catalogue: Catalogue, recipe: Recipe, tmp_path: Path, name: str
) -> tuple[int, str, str]:
    repo_id = f"acme/{name}-{uuid.uuid4().hex[:6]}"
    revision = publish_base(store.api(), repo_id, tmp_path / repo_id.split("/")[1])
    [job_id] = queue_jobs(catalogue, recipe, {repo_id: revision})
    return job_id, repo_id, revision


@pytest.mark.slow
def test_a_killed_worker_s_job_is_taken_over_after_its_lease_expires(
    db_url: str,
    namespace: str,
    tmp_path: Path,
    store: Store,
    recipe_dir: Path,
    recipe: Recipe,
    report_path: Path,
) -> None:
    lease_s = 3
    with Catalogue.open(db_url, namespace=namespace) as catalogue:
        job_id, repo_id, revision = one_job(store, catalogue, recipe, tmp_path, "killed")
        base = worker_env(tmp_path, store, db_url, namespace, recipe_dir, **{ENV_REPORT: str(report_path)})
        env = base | {"PRUNA_HUB_LEASE_SECONDS": str(lease_s)}
        doomed = start_worker(env | {ENV_HOLD: "60"}, "--exit-when-empty")
        signal_mid_job(doomed, signal.SIGKILL)
        doomed.wait(timeout=30)
        [job] = jobs_of(catalogue)
        assert (job.state, job.attempts) == ("smashed", 1)  # leased by a dead worker
        dead_owner = job.lease_owner

        # A worker polling for work takes the job over once the dead worker's lease has expired.
        rescuer = start_worker(env, "--max-jobs", "1", "--poll-interval", "0.5")
        code, summary, err = finish(rescuer, timeout=300)

        assert code == 0, err
        assert [(j["job_id"], j["state"]) for j in summary["jobs"]] == [(job_id, "published")]
        [job] = jobs_of(catalogue)
        assert (job.state, job.attempts, job.lease_owner) == ("published", 2, None)
        assert dead_owner is not None
        [artifact] = artifacts_of(catalogue, [job_id])
    target = f"{env['PRUNA_HUB_TARGET_ORG']}/{repo_id.split('/')[1]}-smashed-test"
    assert artifact.repo_id == target and artifact.verified
    assert assert_published_once(store, target, revision, repo_id) == artifact.commit_sha


@pytest.mark.slow
def test_a_worker_paused_past_its_lease_neither_publishes_nor_deletes_its_successors_files(
    db_url: str,
    namespace: str,
    tmp_path: Path,
    store: Store,
    recipe_dir: Path,
    recipe: Recipe,
    report_path: Path,
) -> None:
    """SIGSTOP a worker mid-job until its lease expires; a successor takes the job; SIGCONT the stale
    worker while the successor is still working. The stale one stops at its next step under the lease
    and cleans up only its own attempt's folder (they once shared work/job-<id>, and the stale cleanup
    deleted the successor's files); the successor publishes once."""
    lease_s = 3
    with Catalogue.open(db_url, namespace=namespace) as catalogue:
        job_id, repo_id, revision = one_job(store, catalogue, recipe, tmp_path, "paused")
        base = worker_env(tmp_path, store, db_url, namespace, recipe_dir, **{ENV_REPORT: str(report_path)})
        env = base | {"PRUNA_HUB_LEASE_SECONDS": str(lease_s)}
        stale = start_worker(env | {ENV_HOLD: "2"}, "--exit-when-empty")
        signal_mid_job(stale, signal.SIGSTOP)
        try:
            time.sleep(lease_s + 1)
            successor = start_worker(env | {ENV_HOLD: "4"}, "--max-jobs", "1", "--poll-interval", "0.5")
            log: list[str] = []
            assert wait_for_line(successor, "evaluating against the base", log), "".join(log)[-3000:]
        finally:
            stale.send_signal(signal.SIGCONT)
        _, stale_summary, stale_err = finish(stale, timeout=120)
        code, summary, err = finish(successor, timeout=300)

        assert code == 0, "".join(log) + err
        assert [(j["job_id"], j["state"]) for j in summary["jobs"]] == [(job_id, "published")]
        assert [j["state"] for j in stale_summary.get("jobs", [])] == ["lease_lost"], stale_err
        [job] = jobs_of(catalogue)
        assert (job.state, job.attempts) == ("published", 2)
        [artifact] = artifacts_of(catalogue, [job_id])
    target = f"{env['PRUNA_HUB_TARGET_ORG']}/{repo_id.split('/')[1]}-smashed-test"
    assert assert_published_once(store, target, revision, repo_id) == artifact.commit_sha
    assert not list((tmp_path / "work").glob(f"job-{job_id}-*"))  # each attempt removed its own folder


@pytest.mark.slow
def test_sigterm_finishes_the_current_job_then_exits_cleanly(
    db_url: str,
    namespace: str,
    tmp_path: Path,
    store: Store,
    recipe_dir: Path,
    recipe: Recipe,
    report_path: Path,
) -> None:
    with Catalogue.open(db_url, namespace=namespace) as catalogue:
        first, _, _ = one_job(store, catalogue, recipe, tmp_path, "current")
        second, _, _ = one_job(store, catalogue, recipe, tmp_path, "next")
        env = worker_env(
            tmp_path, store, db_url, namespace, recipe_dir, **{ENV_REPORT: str(report_path), ENV_HOLD: "3"}
        )
        worker = start_worker(env, "--exit-when-empty")
        log = signal_mid_job(worker, signal.SIGTERM)
        code, summary, err = finish(worker, timeout=120)

        assert code == 0, log + err
        assert [(j["job_id"], j["state"]) for j in summary["jobs"]] == [(first, "published")]
        states = {j.id: (j.state, j.attempts, j.lease_owner) for j in jobs_of(catalogue)}
    assert states == {first: ("published", 1, None), second: ("queued", 0, None)}


@pytest.mark.slow
def test_ctrl_c_releases_the_current_job_back_to_the_queue(
    db_url: str,
    namespace: str,
    tmp_path: Path,
    store: Store,
    recipe_dir: Path,
    recipe: Recipe,
    report_path: Path,
) -> None:
    with Catalogue.open(db_url, namespace=namespace) as catalogue:
        job_id, _, _ = one_job(store, catalogue, recipe, tmp_path, "interrupted")
        env = worker_env(
            tmp_path, store, db_url, namespace, recipe_dir, **{ENV_REPORT: str(report_path), ENV_HOLD: "60"}
        )
        worker = start_worker(env, "--exit-when-empty")
        log = signal_mid_job(worker, signal.SIGINT)
        code, _, err = finish(worker, timeout=120)

        assert code == 130, log + err
        assert "released back to the queue" in err
        [job] = jobs_of(catalogue)
    assert (job.id, job.state, job.attempts, job.lease_owner) == (job_id, "queued", 0, None)


# --- the database going away ------------------------------------------------------------------------------


class ConnectionKiller(threading.Thread):
    """Terminates the workers' PostgreSQL connections (application_name pruna-hub) every ``every_s``."""

    def __init__(self, db_url: str, every_s: float) -> None:
        super().__init__(daemon=True)
        from sqlalchemy.engine import make_url

        url = make_url(db_url)
        self.database = url.database
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.every_s = every_s
        self.killed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, application_name="test-killer") as connection:
            while not self.stop.wait(self.every_s):
                rows = connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = 'pruna-hub' AND pid <> pg_backend_pid()",
                    (self.database,),
                ).fetchall()
                self.killed += sum(1 for (ok,) in rows if ok)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"])
def test_workers_survive_their_database_connections_being_killed(
    backend: str,
    db_url: str,
    namespace: str,
    tmp_path: Path,
    store: Store,
    recipe_dir: Path,
    recipe: Recipe,
    report_path: Path,
    many_bases: dict[str, str],
) -> None:
    bases = dict(list(many_bases.items())[:30])
    with Catalogue.open(db_url, namespace=namespace) as catalogue:
        job_ids = queue_jobs(catalogue, recipe, bases)
    env = worker_env(tmp_path, store, db_url, namespace, recipe_dir, **{ENV_REPORT: str(report_path)})
    killer = ConnectionKiller(db_url, every_s=0.4)

    workers = [start_worker(env, "--exit-when-empty") for _ in range(2)]
    killer.start()
    try:
        results = [finish(w, timeout=600) for w in workers]
    finally:
        killer.stop.set()
        killer.join()

    assert killer.killed > 0
    for code, _, err in results:
        assert code == 0, err
    with Catalogue.open(db_url, namespace=namespace) as catalogue:
        jobs = jobs_of(catalogue)
        artifacts = artifacts_of(catalogue, job_ids)
        with catalogue.read_session() as session:
            runs = session.query(BenchmarkRun).filter(BenchmarkRun.job_id.in_(job_ids)).all()
    assert {(j.state, j.lease_owner) for j in jobs} == {("published", None)}, [
        (j.id, j.state, j.attempts, j.last_error_type, j.last_error_message)
        for j in jobs
        if j.state != "published"
    ]
    assert sorted(a.job_id or 0 for a in artifacts) == sorted(job_ids)
    assert all(a.verified for a in artifacts)
    assert {r.job_id for r in runs if r.subject == "smashed"} == set(job_ids)
    org = env["PRUNA_HUB_TARGET_ORG"]
    for base_repo_id, revision in bases.items():
        assert_published_once(
            store, f"{org}/{base_repo_id.split('/')[1]}-smashed-test", revision, base_repo_id
        )
    print(f"killed {killer.killed} connections; attempts {sorted(j.attempts for j in jobs)}")


# --- Ray ---------------------------------------------------------------------------------------------------


@pytest.fixture
def local_ray(tmp_path: Path, store: Store) -> Iterator[Path]:
    """A local Ray (2 CPUs) whose workers reach the served store and crash where the stand-in says.

    Started here rather than by the executor only to add the stand-in's setup hook; ``RayExecutor`` then
    finds Ray running and submits to it. Yields the crash-marker directory.
    """
    ray = pytest.importorskip("ray")
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    support = str(Path(__file__).resolve().parent)
    env = {
        "HF_ENDPOINT": store.endpoint,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_XET": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [support, os.environ.get("PYTHONPATH")])),
        ENV_CRASH_DIR: str(crash_dir),
    }
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": env, "worker_process_setup_hook": "worker_support.install"},
    )
    try:
        yield crash_dir
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_runs_real_jobs_records_crashed_tasks_and_gives_jobs_back_on_ctrl_c(
    tmp_path: Path, store: Store, recipe_dir: Path, recipe: Recipe, local_ray: Path
) -> None:
    from pruna_hub.settings import load_settings
    from pruna_hub.sync.context import SyncContext
    from pruna_hub.sync.executors import RayExecutor

    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    with Catalogue.open(url) as catalogue:
        flaky, flaky_repo, flaky_revision = one_job(store, catalogue, recipe, tmp_path, "ray-flaky")
        doomed, doomed_repo, _ = one_job(store, catalogue, recipe, tmp_path, "always-crash")
    settings = load_settings(
        {
            "hub_endpoint": store.endpoint,
            "database_url": url,
            "recipe_dirs": [recipe_dir],
            "work_dir": str(tmp_path / "work"),
            "device": "cpu",
            "retry_base_seconds": 0,
            "target_org": "RayOrg",
        },
        environ={},
    )
    ctx = SyncContext.open(settings, report=lambda message: None)
    try:
        outcomes = RayExecutor(num_cpus=2, parallelism=2).drain(ctx)
    finally:
        ctx.close()

    states: dict[int, list[str]] = {}
    for outcome in outcomes:
        states.setdefault(outcome.job_id, []).append(outcome.state)
    # The first attempt of every job dies with its Ray worker (os._exit in the stand-in's smash step).
    assert states == {flaky: ["queued", "published"], doomed: ["queued", "queued", "failed"]}
    assert all("Ray task running the job died" in (o.error or "") for o in outcomes if o.state != "published")
    with Catalogue.open(url) as catalogue:
        jobs = {j.id: j for j in jobs_of(catalogue)}
        [artifact] = artifacts_of(catalogue, [flaky, doomed])
        with catalogue.read_session() as session:
            runs = session.query(BenchmarkRun).filter(BenchmarkRun.job_id == flaky).all()
    assert (jobs[flaky].state, jobs[flaky].attempts, jobs[flaky].last_error_type) == (
        "published",
        2,
        "WorkerCrashed",
    )
    assert (jobs[doomed].state, jobs[doomed].attempts, jobs[doomed].last_error_type) == (
        "failed",
        3,
        "WorkerCrashed",
    )
    assert "WorkerCrashedError" in (jobs[doomed].last_error_message or "")
    # The published job ran for real on a Ray worker: a real evaluation, recorded; a verified artifact.
    smashed_run = next(r for r in runs if r.subject == "smashed")
    assert smashed_run.report["quality"]["top1_agreement"] >= 0.8
    target = f"RayOrg/{flaky_repo.split('/')[1]}-smashed-test"
    assert artifact.repo_id == target and artifact.verified
    assert assert_published_once(store, target, flaky_revision, flaky_repo) == artifact.commit_sha
    assert not store.api().repo_exists(f"RayOrg/{doomed_repo.split('/')[1]}-smashed-test")

    # Ctrl-C while a task runs: the task is cancelled and its job given back at once, the attempt not
    # counted (not left leased until the lease expires).
    with Catalogue.open(url) as catalogue:
        interrupted, interrupted_repo, _ = one_job(store, catalogue, recipe, tmp_path, "ray-interrupted")
    asked: list[bool] = []

    def ctrl_c_after_one_submission() -> bool:
        asked.append(True)
        if len(asked) > 1:
            raise KeyboardInterrupt
        return False

    ctx = SyncContext.open(settings, report=lambda message: None)
    try:
        with pytest.raises(KeyboardInterrupt):
            RayExecutor(num_cpus=2, parallelism=2).drain(ctx, should_stop=ctrl_c_after_one_submission)
    finally:
        ctx.close()
    with Catalogue.open(url) as catalogue:
        job = next(j for j in jobs_of(catalogue) if j.id == interrupted)
    assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)
    assert not store.api().repo_exists(f"RayOrg/{interrupted_repo.split('/')[1]}-smashed-test")
