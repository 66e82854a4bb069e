"""Test support: throwaway PostgreSQL databases, pytest fixtures over both backends, claim workers.

Every catalogue test runs on SQLite and on the PostgreSQL server given by ``PRUNA_HUB_TEST_POSTGRES_URL``
(default: the trust-auth server at 127.0.0.1:5432). A test session creates one throwaway database and
drops it at the end; PostgreSQL tests are skipped only when the server is unreachable, with the reason in
the skip message. Import the fixtures into a test module or conftest::

    from registry_db.testing import backend, catalogue, db_url, empty_db_url, namespace, pg_database  # noqa

The worker functions live here (not in a test module) so that ``multiprocessing`` with the spawn start
method can import them without importing a test module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

ENV_POSTGRES_URL = "PRUNA_HUB_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")


def postgres_admin_url() -> URL:
    """A URL to a maintenance database of the test server (CREATE/DROP DATABASE are issued there)."""
    url = make_url(os.environ.get(ENV_POSTGRES_URL, DEFAULT_POSTGRES_URL))
    return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url


def postgres_unreachable_reason(admin: URL | None = None) -> str | None:
    """None when the server answers, else why not (for the skip message)."""
    import psycopg

    admin = admin or postgres_admin_url()
    try:
        with psycopg.connect(_libpq(admin), connect_timeout=3):
            return None
    except psycopg.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"PostgreSQL at {admin.host}:{admin.port or 5432} unreachable ({first})"


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(admin: URL, name: str) -> URL:
    import psycopg

    with psycopg.connect(_libpq(admin), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin.set(database=name)


def drop_database(admin: URL, name: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(admin), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def throwaway_postgres_database(prefix: str = "pruna_hub_test") -> Iterator[URL]:
    """A new, empty database on the test server, dropped on exit."""
    admin = postgres_admin_url()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = create_database(admin, name)
    try:
        yield url
    finally:
        drop_database(admin, name)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# --- pytest fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The session's throwaway PostgreSQL database (created at head by the first Catalogue.open)."""
    reason = postgres_unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    with throwaway_postgres_database() as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def namespace() -> str:
    """A namespace of its own per test: tests sharing the session's PostgreSQL database never meet."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite catalogue migrated to head once per session; tests get copies (migrating costs ~0.5 s)."""
    from registry_db.session import Catalogue

    path = tmp_path_factory.mktemp("template") / "catalogue.db"
    with Catalogue.open(sqlite_url(path)) as catalogue, catalogue.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A catalogue URL for this test: a fresh SQLite file at head, or the session's PostgreSQL database."""
    if backend == "sqlite":
        path = tmp_path / "catalogue.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return sqlite_url(path)
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own with nothing in it (for migration tests), on each backend."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path / "empty.db")
        return
    reason = postgres_unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    with throwaway_postgres_database() as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture
def catalogue(db_url: str, namespace: str) -> Iterator[Any]:
    from registry_db.session import Catalogue

    with Catalogue.open(db_url, namespace=namespace) as opened:
        yield opened


# --- worker processes ---------------------------------------------------------------------------------------


def claim_until_empty(
    url: str, namespace: str, owner: str, start: Any, lease_seconds: float = 60.0, pause_s: float = 0.002
) -> list[int]:
    """Claim and complete jobs until none is left; returns the ids this process completed.

    ``start`` is a multiprocessing Barrier of all the workers (or an Event set once they are up): every
    worker has its catalogue open before it waits, so that they all race from the start. ``pause_s``
    after each job stands for the work a real worker does between claims: without it, SQLite (whose busy
    handler sleeps and retries, with no queue) let one process take all 200 jobs about once in 17 runs.
    """
    from registry_db.jobs import claim_next_job, complete_job
    from registry_db.session import Catalogue

    done: list[int] = []
    with Catalogue.open(url, namespace=namespace) as catalogue:
        start.wait(timeout=60)
        while True:
            with catalogue.session() as session:
                lease = claim_next_job(
                    session, owner, namespace=namespace, lease_for=timedelta(seconds=lease_seconds)
                )
            if lease is None:
                return done
            with catalogue.session() as session:
                complete_job(session, lease)
            done.append(lease.job_id)
            time.sleep(pause_s)


def upgrade_in_process(url: str, start: Any) -> str | None:
    """Open (and so create at head) the catalogue once ``start`` is set; returns the revision found."""
    from registry_db.session import Catalogue

    start.wait(timeout=60)
    with Catalogue.open(url) as catalogue:
        return catalogue.status.current if catalogue.status else None


def journal_mode_when_opened_at(url: str, start_at: float) -> str:
    """Connect to ``url`` at wall-clock time ``start_at`` (so that several processes race) and report
    the journal mode the connection ended up with."""
    from registry_db.engine import create_catalogue_engine

    engine = create_catalogue_engine(url)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        with engine.connect() as connection:
            return str(connection.exec_driver_sql("PRAGMA journal_mode").scalar_one())
    finally:
        engine.dispose()


# --- a small realistic catalogue --------------------------------------------------------------------------

VERSIONS = {"torch": "2.13.0", "transformers": "5.23.0", "hqq": "0.2.8", "smash": "0.1.0"}
HARDWARE = {"device": "cpu", "name": "test CPU", "memory_bytes": 24 * 2**30}
BASE_LATENCY_MS = 57.0
# (base repo, recipe) -> decode latency in ms of its published artifact.
LATENCIES = {
    ("org/llama-a", "llama-hqq-4bit"): 12.0,
    ("org/llama-a", "llama-int8"): 30.0,
    ("org/llama-b", "llama-hqq-4bit"): 14.0,
    ("org/qwen", "llama-int8"): 25.0,
}


def seed_catalogue(session: Any, namespace: str) -> dict[str, Any]:
    """Two architectures, four base revisions, two recipes; four published artifacts with base and smashed
    runs, one failed, one queued and one skipped job. Returns the ids the tests assert against."""
    from registry_db.jobs import create_or_get_job
    from registry_db.records import upsert_base_model, upsert_recipe

    def base(repo: str, rev: str, arch: str, **kw: Any) -> Any:
        return upsert_base_model(
            session, namespace=namespace, repo_id=repo, revision=rev * 40, architectures=[arch], **kw
        )

    bases = {
        "org/llama-a": base(
            "org/llama-a", "a", "LlamaForCausalLM", license="apache-2.0", parameter_count=135_000_000
        ),
        "org/llama-b": base("org/llama-b", "b", "LlamaForCausalLM", license="mit"),
        "org/qwen": base("org/qwen", "c", "Qwen2ForCausalLM", license="apache-2.0"),
        "org/gated": base("org/gated", "d", "LlamaForCausalLM", gated=True),
    }
    hqq_config = {"format_version": 1, "algorithms": {"hqq": {"weight_bits": 4}, "torch_compile": {}}}
    recipes = {
        "llama-hqq-4bit": upsert_recipe(
            session,
            namespace=namespace,
            name="llama-hqq-4bit",
            content_hash="h" * 64,
            version="1",
            smash_config=hqq_config,
        ),
        "llama-int8": upsert_recipe(
            session,
            namespace=namespace,
            name="llama-int8",
            content_hash="i" * 64,
            version="1",
            smash_config={"format_version": 1, "algorithms": {"int8_weight": {}}},
        ),
    }
    jobs = {
        key: _publish(session, namespace, bases[key[0]], recipes[key[1]], ms) for key, ms in LATENCIES.items()
    }
    failed = _fail(session, namespace, bases["org/qwen"], recipes["llama-hqq-4bit"])
    queued, _ = create_or_get_job(session, bases["org/llama-b"], recipes["llama-int8"])
    skipped, _ = create_or_get_job(
        session,
        bases["org/gated"],
        recipes["llama-hqq-4bit"],
        state="skipped",
        skip_reason="gated: token cannot read it",
    )
    session.flush()
    return {
        "jobs": jobs,
        "failed": failed,
        "queued": queued.id,
        "skipped": skipped.id,
        "bases": {k: v.id for k, v in bases.items()},
        "recipes": {k: v.id for k, v in recipes.items()},
    }


def _publish(session: Any, namespace: str, base: Any, recipe: Any, latency: float) -> int:
    """Walk one job through the whole state machine the way the sync service does."""
    from registry_db.jobs import advance_job, claim_next_job, complete_job, create_or_get_job
    from registry_db.records import MetricValue, record_artifact, record_benchmark_run

    job, _ = create_or_get_job(session, base, recipe)
    lease = claim_next_job(session, "seeder", namespace=namespace)
    assert lease is not None and lease.job_id == job.id
    advance_job(session, lease, "smashed")
    common = {
        "base_model_id": base.id,
        "job_id": job.id,
        "namespace": namespace,
        "hardware": HARDWARE,
        "library_versions": VERSIONS,
    }
    record_benchmark_run(
        session,
        subject="base",
        **common,
        metrics=[
            MetricValue("decode_latency_ms", BASE_LATENCY_MS, "ms"),
            MetricValue("decode_tokens_per_s", 1000 / BASE_LATENCY_MS, "tokens/s"),
        ],
    )
    record_benchmark_run(
        session,
        subject="smashed",
        **common,
        report={"quality": {"top1_agreement": 0.95}},
        metrics=[
            MetricValue("decode_latency_ms", latency, "ms"),
            MetricValue("decode_tokens_per_s", 1000 / latency, "tokens/s"),
            MetricValue("top1_agreement", 0.95 if "hqq" in recipe.name else 0.99),
        ],
    )
    advance_job(session, lease, "benchmarked")
    record_artifact(
        session,
        job_id=job.id,
        repo_id=f"smashed/{base.repo_id.split('/')[1]}-{recipe.name}",
        commit_sha=f"{job.id:040x}",
        tag=f"base-{base.revision[:7]}",
        files={"model.safetensors": 1000 * job.id, "smash_config.json": 120},
        verified=True,
    )
    complete_job(session, lease)
    return int(job.id)


def _fail(session: Any, namespace: str, base: Any, recipe: Any) -> int:
    from registry_db.jobs import claim_next_job, create_or_get_job, fail_job

    job, _ = create_or_get_job(session, base, recipe)
    lease = claim_next_job(session, "seeder", namespace=namespace)
    assert lease is not None and lease.job_id == job.id
    fail_job(session, lease, error_type="QualityGateError", message="top1_agreement 0.41 < 0.9")
    return int(job.id)
