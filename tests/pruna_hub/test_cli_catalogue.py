"""`pruna-hub db` and `pruna-hub catalogue` through click's CliRunner, on SQLite and PostgreSQL, against a
seeded catalogue; bad input goes through ``main()`` so the test sees exactly what a user sees."""

# The catalogue fixtures are imported from registry_db.testing (tests/registry_db/conftest.py is not in
# scope here), and pytest fixtures are used by naming them as parameters:
# ruff: noqa: F811

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from pruna_hub.cli import cli, main
from registry_db.engine import create_catalogue_engine
from registry_db.migrate import head_revision
from registry_db.session import Catalogue
from registry_db.testing import (  # noqa: F401
    LATENCIES,
    backend,
    catalogue,
    db_url,
    empty_db_url,
    namespace,
    pg_database,
    seed_catalogue,
    sqlite_template,
)


@pytest.fixture
def seeded(catalogue: Catalogue) -> Iterator[list[str]]:
    """The seeded catalogue's connection options, to append to every command line."""
    with catalogue.session() as session:
        seed_catalogue(session, catalogue.namespace)
    yield [
        "--database-url",
        catalogue.engine.url.render_as_string(hide_password=False),
        "--namespace",
        catalogue.namespace,
    ]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def run_main(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    """Run the console-script entry point (its error handling included); (exit code, stdout, stderr)."""
    with CliRunner().isolation(env=env) as (stdout, stderr, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        return code, stdout.getvalue().decode(), stderr.getvalue().decode()


def test_list_table_and_json(seeded: list[str]) -> None:
    table = invoke("catalogue", "list", *seeded, "--sort", "decode_latency_ms")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["JOB", "STATE", "BASE", "ARCH"] and "DECODE_LATENCY_MS" in lines[0]
    assert "smashed/llama-a-llama-hqq-4bit" in lines[1] and "12 ms" in lines[1]
    assert any("gated: token cannot read it" in line for line in lines)
    entries = json.loads(
        invoke("catalogue", "list", *seeded, "--sort", "decode_latency_ms", "--format", "json")
    )
    assert [e["value"] for e in entries[:4]] == sorted(LATENCIES.values())
    qwen = json.loads(invoke("catalogue", "list", *seeded, "--arch", "Qwen2ForCausalLM", "--format", "json"))
    assert {(e["recipe"], e["state"]) for e in qwen} == {
        ("llama-int8", "published"),
        ("llama-hqq-4bit", "failed"),
    }
    hqq = json.loads(
        invoke(
            "catalogue",
            "list",
            *seeded,
            "--algorithm",
            "int8_weight",
            "--state",
            "queued",
            "--format",
            "json",
        )
    )
    assert [(e["base_repo_id"], e["recipe"]) for e in hqq] == [("org/llama-b", "llama-int8")]


def test_show_table_and_json(seeded: list[str]) -> None:
    text_out = invoke("catalogue", "show", "smashed/llama-b-llama-hqq-4bit", *seeded)
    assert "org/llama-b @ " + "b" * 40 in text_out
    assert "hqq -> torch_compile" in text_out and "quantized from org/llama-b" in text_out
    assert "model.safetensors" in text_out and "decode_latency_ms" in text_out and "57 ms" in text_out
    detail = json.loads(
        invoke("catalogue", "show", "smashed/llama-b-llama-hqq-4bit", *seeded, "--format", "json")
    )
    assert detail["base"]["license"] == "mit" and detail["job"]["state"] == "published"


def test_best_table_and_json(seeded: list[str]) -> None:
    args = ("catalogue", "best", "--arch", "LlamaForCausalLM", "--metric", "decode_latency_ms", *seeded)
    lines = invoke(*args).splitlines()
    assert "BEST ARTIFACT" in lines[0] and len(lines) == 3
    assert "smashed/llama-a-llama-hqq-4bit" in lines[1] and "0.21x" in lines[1]  # 12 ms of the base's 57 ms
    best = json.loads(invoke(*args, "--format", "json"))
    assert [(b["base_repo_id"], b["value"]) for b in best] == [("org/llama-a", 12.0), ("org/llama-b", 14.0)]
    slowest = json.loads(invoke(*args, "--higher-is-better", "--format", "json"))
    assert slowest[0]["value"] == 30.0


def test_export_json_and_csv(seeded: list[str], tmp_path: Path) -> None:
    rows = json.loads(invoke("catalogue", "export", *seeded))
    assert len(rows) == 7
    out = tmp_path / "catalogue.csv"
    invoke("catalogue", "export", *seeded, "--format", "csv", "--output", str(out))
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(table) == 7
    published = {
        (r["base_repo_id"], r["recipe"]): float(r["smashed.decode_latency_ms"])
        for r in table
        if r["state"] == "published"
    }
    assert published == LATENCIES
    assert {r["base.decode_latency_ms"] for r in table if r["state"] == "published"} == {"57.0"}


def test_db_current_and_upgrade(empty_db_url: str) -> None:
    if empty_db_url.startswith("sqlite"):  # `db current` only reads: it never creates the file
        code, _, stderr = run_main("db", "current", "--database-url", empty_db_url)
        assert code == 1 and "does not exist" in stderr and "`pruna-hub db upgrade`" in stderr
    else:
        assert "empty" in invoke("db", "current", "--database-url", empty_db_url)
    assert f"upgraded from empty to {head_revision()}" in invoke(
        "db", "upgrade", "--database-url", empty_db_url
    )
    assert "already at revision" in invoke("db", "upgrade", "--database-url", empty_db_url)
    status = json.loads(invoke("db", "current", "--database-url", empty_db_url, "--format", "json"))
    assert status["state"] == "current" and status["current"] == head_revision()


def test_database_url_from_the_environment(seeded: list[str]) -> None:
    url, ns = seeded[1], seeded[3]
    code, stdout, _ = run_main(
        "catalogue",
        "list",
        "--format",
        "json",
        env={"PRUNA_HUB_DATABASE_URL": url, "PRUNA_HUB_NAMESPACE": ns},
    )
    assert code == 0 and len(json.loads(stdout)) == 7


@pytest.mark.parametrize("backend", ["sqlite"])
def test_default_catalogue_lives_in_the_data_directory(tmp_path: Path, backend: str) -> None:
    env = {"PRUNA_HUB_DATABASE_URL": None, "PRUNA_HUB_HOME": str(tmp_path / "home")}
    code, _, stderr = run_main("catalogue", "list", env=env)
    # Reading creates nothing: the error names the path and the command that creates it.
    assert code == 1 and str(tmp_path / "home" / "catalogue.db") in stderr and "db upgrade" in stderr
    assert not (tmp_path / "home").exists()
    assert run_main("db", "upgrade", env=env)[0] == 0
    code, stdout, stderr = run_main("catalogue", "list", env=env)
    assert (code, stdout.strip()) == (0, "no entries match"), stderr
    assert (tmp_path / "home" / "catalogue.db").is_file()


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    "command",
    [("catalogue", "list"), ("catalogue", "show", "a/b"), ("catalogue", "best", "--metric", "ttft_ms")],
)
def test_queries_never_create_a_database_or_its_folder(
    tmp_path: Path, backend: str, command: tuple[str, ...]
) -> None:
    url = f"sqlite:///{tmp_path / 'nonexistent' / 'dir' / 'x.db'}"
    code, stdout, stderr = run_main(*command, "--database-url", url)
    assert code == 1 and stdout == "" and "does not exist" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "nonexistent").exists()


def test_an_empty_database_is_not_created_by_a_query(empty_db_url: str) -> None:
    if empty_db_url.startswith("sqlite"):
        Catalogue.open(empty_db_url, create=False).dispose()  # an empty file, as `sqlite3 x.db` leaves
    code, _, stderr = run_main("catalogue", "list", "--database-url", empty_db_url)
    assert code == 1 and "holds no catalogue yet" in stderr
    engine = create_catalogue_engine(empty_db_url)
    try:
        from registry_db.migrate import SchemaState, schema_status

        assert schema_status(engine).state is SchemaState.EMPTY
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url", ["not a url", "mysql://root@127.0.0.1/x", "postgresql+psycopg2://u@h/db", "postgresql://127.0.0.1"]
)
def test_malformed_database_url_is_one_clear_message(url: str) -> None:
    code, stdout, stderr = run_main("catalogue", "list", "--database-url", url)
    assert code == 2 and stdout == ""
    assert (
        stderr.startswith(f"error: database URL {url!r} is not usable") and "postgresql+psycopg://" in stderr
    )
    assert "Traceback" not in stderr


def test_unreachable_server_names_it_and_hides_the_password() -> None:
    url = "postgresql+psycopg://admin:s3cret@127.0.0.1:1/catalogue"  # nothing listens on port 1
    code, _, stderr = run_main("catalogue", "list", "--database-url", url)
    assert code == 1 and "cannot connect" in stderr and "127.0.0.1:1" in stderr
    assert "s3cret" not in stderr and "Traceback" not in stderr
    code, _, stderr = run_main("db", "upgrade", "--database-url", url)
    assert code == 1 and "cannot connect" in stderr


def test_database_from_a_newer_version_is_refused(empty_db_url: str) -> None:
    Catalogue.open(empty_db_url).dispose()
    engine = create_catalogue_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    engine.dispose()
    code, _, stderr = run_main("catalogue", "list", "--database-url", empty_db_url)
    assert code == 1 and "ffff_from_the_future" in stderr and "newer version" in stderr
    code, _, stderr = run_main("db", "upgrade", "--database-url", empty_db_url)
    assert code == 1 and "newer version" in stderr


def test_database_behind_names_the_upgrade_command(empty_db_url: str) -> None:
    assert "upgraded" in invoke("db", "upgrade", "--database-url", empty_db_url, "--revision", "0001")
    code, _, stderr = run_main("catalogue", "best", "--metric", "ttft_ms", "--database-url", empty_db_url)
    assert code == 1 and "run `pruna-hub db upgrade`" in stderr


def test_unknown_artifact_and_bad_choice(seeded: list[str]) -> None:
    code, _, stderr = run_main("catalogue", "show", "smashed/nope", *seeded)
    assert code == 1 and "no artifact 'smashed/nope'" in stderr
    code, _, stderr = run_main("catalogue", "list", "--state", "done", *seeded)
    assert code == 2 and "'done' is not one of" in stderr


def test_an_unknown_revision_is_bad_input(empty_db_url: str) -> None:
    code, _, stderr = run_main("db", "upgrade", "--database-url", empty_db_url, "--revision", "nope")
    assert code == 2 and "revision = 'nope' is not valid" in stderr and head_revision() in stderr


def test_the_metric_choice_is_the_table_the_sync_records_from() -> None:
    from pruna_hub.card import METRICS, QUALITY
    from pruna_hub.cli.catalogue import metric_names

    names = set(metric_names())
    assert set(METRICS) | set(QUALITY) <= names
    assert {"decode_latency_ms", "decode_tokens_per_s", "top1_agreement", "ttft_ms"} <= names
    code, _, stderr = run_main("catalogue", "best", "--metric", "decode_latency")
    assert code == 2 and "'decode_latency_ms'" in stderr
