"""Schema and migrations: models and migrations agree, empty databases are created at head, databases behind
or ahead of the code are refused with their own messages, upgrading keeps data, upgrades are serialized."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import column, table, text

from pruna_hub.cli import cli
from registry_db.engine import create_catalogue_engine
from registry_db.errors import SchemaAheadError, SchemaBehindError, UnmanagedDatabaseError
from registry_db.migrate import SchemaState, head_revision, schema_status, script_directory, upgrade
from registry_db.models import Base
from registry_db.queries import Filters, list_entries
from registry_db.session import Catalogue
from registry_db.testing import journal_mode_when_opened_at, upgrade_in_process

REPO = Path(__file__).resolve().parents[2]


def test_registry_db_never_imports_torch() -> None:
    code = (
        "import sys, registry_db, registry_db.session, registry_db.jobs, registry_db.records, "
        "registry_db.queries, registry_db.migrate, pruna_hub.cli.db, pruna_hub.cli.catalogue\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'smash') if m in sys.modules)\n"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == ""


def test_errors_module_stays_light() -> None:
    """The CLI's error handler imports registry_db.errors on every run: it must not pull in SQLAlchemy."""
    code = "import sys, registry_db.errors; print('sqlalchemy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "False"


def test_there_are_at_least_two_revisions_in_one_line() -> None:
    revisions = list(script_directory().walk_revisions())
    assert len(revisions) >= 2
    assert [r.revision for r in script_directory().get_revisions("heads")] == [head_revision()]


def test_models_and_migrations_agree(empty_db_url: str) -> None:
    with Catalogue.open(empty_db_url) as catalogue, catalogue.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_empty_database_is_created_at_head(empty_db_url: str) -> None:
    engine = create_catalogue_engine(empty_db_url)
    assert schema_status(engine).state is SchemaState.EMPTY
    with Catalogue.open(empty_db_url) as catalogue:
        assert catalogue.status is not None and catalogue.status.current == head_revision()
    assert schema_status(engine).state is SchemaState.CURRENT
    engine.dispose()


def test_create_false_leaves_empty_database_alone(empty_db_url: str) -> None:
    with Catalogue.open(empty_db_url, create=False) as catalogue:
        assert catalogue.status is not None and catalogue.status.state is SchemaState.EMPTY


T0 = "2026-01-01 00:00:00"
JSON_CONFIG = json.dumps({"format_version": 1, "algorithms": {"hqq": {}, "torch_compile": {}}})
ROWS_0001: dict[str, list[dict[str, object]]] = {
    "base_models": [
        {
            "id": 1,
            "namespace": "default",
            "repo_id": "org/llama",
            "revision": "r1",
            "architecture": "LlamaForCausalLM",
            "architectures": '["LlamaForCausalLM"]',
            "gated": False,
            "first_seen_at": T0,
            "last_checked_at": T0,
        }
    ],
    "recipes": [
        {
            "id": 1,
            "namespace": "default",
            "name": "llama-hqq",
            "content_hash": "h1",
            "smash_config": JSON_CONFIG,
            "created_at": T0,
        }
    ],
    "jobs": [
        {
            "id": 1,
            "namespace": "default",
            "idempotency_key": "org/llama@r1#h1",
            "base_model_id": 1,
            "recipe_id": 1,
            "state": "published",
            "attempts": 1,
            "max_attempts": 3,
            "next_attempt_at": T0,
            "created_at": T0,
            "updated_at": T0,
        }
    ],
    "artifacts": [
        {
            "id": 1,
            "namespace": "default",
            "job_id": 1,
            "base_model_id": 1,
            "recipe_id": 1,
            "repo_id": "smashed/llama",
            "commit_sha": "c1",
            "files": '[{"path": "model.safetensors", "size": 10}]',
            "file_count": 1,
            "total_bytes": 10,
            "created_at": T0,
        }
    ],
    "lineage": [
        {
            "id": 1,
            "parent_base_model_id": 1,
            "child_artifact_id": 1,
            "relation": "quantized",
            "created_at": T0,
        }
    ],
    "benchmark_runs": [
        {
            "id": i,
            "namespace": "default",
            "subject": subject,
            "base_model_id": 1,
            "artifact_id": artifact,
            "job_id": 1,
            "settings": "{}",
            "hardware": "{}",
            "library_versions": "{}",
            "report": "{}",
            "created_at": T0,
        }
        for i, subject, artifact in ((1, "base", None), (2, "smashed", 1), (3, "smashed", 1))
    ],
    "metrics": [
        {"id": i, "run_id": run, "name": "decode_latency_ms", "value": value, "unit": "ms"}
        for i, run, value in ((1, 1, 57.0), (2, 2, 20.0), (3, 3, 12.0))
    ],
}


def _fill_revision_0001(url: str) -> None:
    """Rows as the 0001 code wrote them (untyped Core tables: today's models describe the head schema)."""
    engine = create_catalogue_engine(url)
    with engine.begin() as connection:
        for name, rows in ROWS_0001.items():
            connection.execute(table(name, *(column(key) for key in rows[0])).insert(), rows)
    engine.dispose()


def _counts(url: str) -> dict[str, int]:
    engine = create_catalogue_engine(url)
    tables = ["base_models", "recipes", "jobs", "artifacts", "lineage", "benchmark_runs", "metrics"]
    with engine.connect() as connection:
        counts = {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}
    engine.dispose()
    return counts


def test_database_behind_is_refused_then_upgraded_without_losing_data(empty_db_url: str) -> None:
    engine = create_catalogue_engine(empty_db_url)
    upgrade(engine, "0001")
    _fill_revision_0001(empty_db_url)
    before = _counts(empty_db_url)

    with pytest.raises(SchemaBehindError, match=r"`pruna-hub db upgrade`") as refused:
        Catalogue.open(empty_db_url)
    assert refused.value.current == "0001" and refused.value.head == head_revision()

    result = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", empty_db_url, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["before"]["current"] == "0001" and report["after"]["current"] == head_revision()

    assert _counts(empty_db_url) == before
    with Catalogue.open(empty_db_url) as catalogue, catalogue.read_session() as session:
        (entry,) = list_entries(session, Filters(), sort_metric="decode_latency_ms")
        # The backfills of 0002: algorithms from the stored config, the newest smashed run's metric.
        assert entry.algorithms == ["hqq", "torch_compile"]
        assert entry.value == 12.0 and entry.artifact_repo_id == "smashed/llama"
        pointers = session.execute(text("SELECT smashed_run_id, base_run_id FROM artifacts")).one()
        assert tuple(pointers) == (3, 1)
    engine.dispose()


def test_database_ahead_is_refused_with_its_own_message(empty_db_url: str) -> None:
    Catalogue.open(empty_db_url).dispose()
    engine = create_catalogue_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
    with pytest.raises(SchemaAheadError, match="newer version") as refused:
        Catalogue.open(empty_db_url)
    assert refused.value.current == "f00dfeed9999"
    with pytest.raises(SchemaAheadError):
        upgrade(engine, "head")
    result = CliRunner().invoke(cli, ["db", "current", "--database-url", empty_db_url, "--format", "json"])
    assert json.loads(result.output)["state"] == "ahead"
    engine.dispose()


def test_foreign_tables_are_refused(empty_db_url: str) -> None:
    engine = create_catalogue_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE payroll (id integer primary key)"))
    with pytest.raises(UnmanagedDatabaseError, match="payroll"):
        Catalogue.open(empty_db_url)
    engine.dispose()


def test_concurrent_first_use_creates_the_schema_once(empty_db_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    with context.Pool(2) as pool:
        pending = [pool.apply_async(upgrade_in_process, (empty_db_url, start)) for _ in range(2)]
        start.set()
        revisions = [p.get(timeout=120) for p in pending]
    assert revisions == [head_revision(), head_revision()]
    engine = create_catalogue_engine(empty_db_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    engine.dispose()


def test_processes_opening_a_new_sqlite_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    # SQLite skips the busy handler for the lock upgrade that switching to WAL needs, so without a retry
    # about one race in eight failed at once with "database is locked" (seen in CI).
    processes = 4
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for attempt in range(16):
            url = f"sqlite:///{tmp_path / f'race-{attempt}.db'}"
            start_at = time.time() + 0.2
            modes = pool.starmap(journal_mode_when_opened_at, [(url, start_at)] * processes)
            assert modes == ["wal"] * processes


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(catalogue: Catalogue) -> None:
    with catalogue.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30_000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


@pytest.mark.slow
def test_migrations_run_from_an_installed_wheel(tmp_path: Path) -> None:
    """Build the wheel, unpack it away from the checkout, and create a catalogue from it alone."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("pruna_hub-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(wheel), str(site)], check=True)
    assert (site / "migrations" / "script.py.mako").is_file()
    code = (
        "import migrations, registry_db.migrate as m\n"
        "from registry_db.session import Catalogue\n"
        f"c = Catalogue.open('sqlite:///{tmp_path}/wheel.db')\n"
        "print(m.migrations_dir(), c.status.current, m.head_revision())"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n{code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    location, current, head = result.stdout.split()
    assert Path(location).is_relative_to(site)
    assert current == head == head_revision()
