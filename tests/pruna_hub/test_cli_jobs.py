"""`pruna-hub jobs` through CliRunner on SQLite and PostgreSQL, and what job control means to the sync: a
retried job runs again, a changed recipe is queued again at the next discovery."""

# ruff: noqa: F811

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi
from sync_support import ACME, local_store, open_context, publish_base, write_recipe

from pruna_hub.cli import cli, main
from pruna_hub.sync.context import SyncContext
from pruna_hub.sync.service import sync_once
from registry_db.jobs import claim_next_job, fail_job
from registry_db.models import Job
from registry_db.models import Recipe as RecipeRow
from registry_db.session import Catalogue
from registry_db.testing import (  # noqa: F401
    backend,
    catalogue,
    db_url,
    namespace,
    pg_database,
    seed_catalogue,
    sqlite_template,
)


@pytest.fixture
def seeded(catalogue: Catalogue) -> Iterator[tuple[list[str], dict[str, Any]]]:
    with catalogue.session() as session:
        ids = seed_catalogue(session, catalogue.namespace)
    url = catalogue.engine.url.render_as_string(hide_password=False)
    yield ["--database-url", url, "--namespace", catalogue.namespace], ids


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def run_main(*args: str) -> tuple[int, str, str]:
    with CliRunner().isolation() as (stdout, stderr, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        return code, stdout.getvalue().decode(), stderr.getvalue().decode()


def test_list_and_show(seeded: tuple[list[str], dict[str, Any]]) -> None:
    options, ids = seeded
    rows = json.loads(invoke("jobs", "list", *options, "--format", "json"))
    assert len(rows) == 7 and [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    [failed] = json.loads(invoke("jobs", "list", "--state", "failed", *options, "--format", "json"))
    assert (failed["id"], failed["base_repo_id"], failed["last_error_type"]) == (
        ids["failed"],
        "org/qwen",
        "QualityGateError",
    )
    table = invoke("jobs", "list", "--base", "org/llama-b", *options)
    assert table.splitlines()[0].split() == ["JOB", "STATE", "BASE", "RECIPE", "ATTEMPTS", "NOTE"]
    assert len(table.splitlines()) == 3
    shown = invoke("jobs", "show", str(ids["failed"]), *options)
    assert "last error QualityGateError: top1_agreement 0.41 < 0.9" in shown and "none by hand" in shown


def test_retry_cancel_requeue_are_recorded_with_who_and_why(seeded: tuple[list[str], dict[str, Any]]) -> None:
    options, ids = seeded
    out = invoke("jobs", "retry", str(ids["failed"]), "--reason", "gate relaxed", "--by", "ana", *options)
    assert out.strip() == f"job {ids['failed']}: failed -> queued, attempt budget 4"
    cancel = ("jobs", "cancel", "--state", "queued", "--reason", "pause", "--by", "bo")
    cancelled = json.loads(invoke(*cancel, *options, "--format", "json"))
    assert {e["job_id"] for e in cancelled} == {ids["failed"], ids["queued"]}
    invoke("jobs", "requeue", str(ids["failed"]), "--reason", "go on", "--by", "ana", *options)
    detail = json.loads(invoke("jobs", "show", str(ids["failed"]), *options, "--format", "json"))
    assert [(e["action"], e["actor"], e["reason"]) for e in detail["events"]] == [
        ("retry", "ana", "gate relaxed"),
        ("cancel", "bo", "pause"),
        ("requeue", "ana", "go on"),
    ]
    assert detail["state"] == "queued" and detail["max_attempts"] == 4
    text = invoke("jobs", "show", str(ids["failed"]), *options)
    assert "retry failed -> queued (budget 4) by ana: gate relaxed" in text


def test_a_change_that_does_not_apply_is_an_error_that_changes_nothing(
    seeded: tuple[list[str], dict[str, Any]],
) -> None:
    options, ids = seeded
    published = next(iter(ids["jobs"].values()))
    code, stdout, stderr = run_main("jobs", "retry", str(published), "--reason", "x", *options)
    assert code == 1 and stdout == ""
    assert stderr.startswith(f"error: job {published} is 'published'") and "Traceback" not in stderr
    code, _, stderr = run_main("jobs", "cancel", "--reason", "x", *options)
    assert code == 2 and "name the jobs" in stderr
    code, _, stderr = run_main("jobs", "retry", str(ids["failed"]), *options)
    assert code == 2 and "--reason" in stderr
    assert (
        json.loads(invoke("jobs", "show", str(ids["failed"]), *options, "--format", "json"))["events"] == []
    )


@pytest.mark.parametrize("backend", ["sqlite"])
def test_reading_jobs_never_creates_a_catalogue(tmp_path: Path, backend: str) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'c.db'}"
    for args in (("list",), ("show", "1"), ("retry", "1", "--reason", "x")):
        code, _, stderr = run_main("jobs", *args, "--database-url", url)
        assert code == 1 and "does not exist" in stderr and "`pruna-hub db upgrade`" in stderr
    assert not (tmp_path / "no").exists()


# --- what job control means to the sync ------------------------------------------------------------------


@pytest.fixture
def make_ctx(tmp_path: Path, db_url: str, namespace: str) -> Iterator[Any]:
    hub = local_store(tmp_path / "hub")
    contexts: list[SyncContext] = []

    def make(recipe_dir: Path) -> SyncContext:
        ctx = open_context(
            endpoint, tmp_path / "work", recipe_dir=recipe_dir, database_url=db_url, namespace=namespace
        )
        contexts.append(ctx)
        return ctx

    with hub.install() as endpoint:
        make.hub = hub  # type: ignore[attr-defined]
        yield make
        for ctx in contexts:
            ctx.close()


def _jobs(ctx: SyncContext) -> list[tuple[int, str, str, str | None]]:
    with ctx.catalogue.read_session() as session:
        rows = session.execute(
            Job.__table__.select()
            .with_only_columns(Job.id, Job.state, RecipeRow.content_hash, Job.skip_reason)
            .join_from(Job, RecipeRow, Job.recipe_id == RecipeRow.id)
            .where(Job.namespace == ctx.catalogue.namespace)
            .order_by(Job.id)
        ).all()
    return [(r.id, r.state, r.content_hash, r.skip_reason) for r in rows]


def _db_options(ctx: SyncContext) -> list[str]:
    url = ctx.catalogue.engine.url.render_as_string(hide_password=False)
    return ["--database-url", url, "--namespace", ctx.catalogue.namespace]


def test_a_changed_recipe_is_queued_at_the_next_discovery(make_ctx: Any, tmp_path: Path) -> None:
    publish_base(HfApi(token=ACME), "acme/tiny-llama", tmp_path / "a")
    publish_base(HfApi(token=ACME), "acme/other-llama", tmp_path / "b", seed=1)
    recipes = write_recipe(tmp_path / "recipes", gate=0.8)
    ctx = make_ctx(recipes)
    assert {d.action for d in sync_once(ctx, run=False).decisions} == {"queued"}
    # One job fails for good under the old recipe, the other is still queued.
    with ctx.catalogue.session() as session:
        lease = claim_next_job(session, "w", namespace=ctx.catalogue.namespace)
        assert lease is not None
        fail_job(session, lease, error_type="QualityGateError", message="top1 0.7 < 0.8")
    [(first, _, old_hash, _), (second, _, _, _)] = _jobs(ctx)
    assert {d.action for d in sync_once(ctx, run=False).decisions} == {"seen"}

    write_recipe(recipes, gate=0.6)  # a gentler gate: a new content hash
    decisions = sync_once(make_ctx(recipes), run=False).decisions

    assert sorted(d.action for d in decisions) == ["queued", "queued"]
    jobs = _jobs(ctx)
    new_hash = jobs[-1][2]
    assert new_hash != old_hash
    assert jobs[:2] == [
        (first, "failed", old_hash, None),
        (second, "skipped", old_hash, f"superseded by job {jobs[-1][0]}: recipe tiny-llama changed"),
    ] or jobs[:2] == [
        (first, "skipped", old_hash, f"superseded by job {jobs[-2][0]}: recipe tiny-llama changed"),
        (second, "failed", old_hash, None),
    ]
    assert [j[1:3] for j in jobs[2:]] == [("queued", new_hash), ("queued", new_hash)]
    assert {d.action for d in sync_once(make_ctx(recipes), run=False).decisions} == {"seen"}


def test_a_job_failed_on_a_hub_outage_is_retried_and_published(make_ctx: Any, tmp_path: Path) -> None:
    publish_base(HfApi(token=ACME), "acme/tiny-llama", tmp_path / "a")
    ctx = make_ctx(write_recipe(tmp_path / "recipes"))
    make_ctx.hub.faults.add("commit", 503, times=1000)
    outcomes = sync_once(ctx).outcomes
    assert [o.state for o in outcomes] == ["queued", "queued", "failed"]
    make_ctx.hub.faults.clear()
    assert [d.action for d in sync_once(ctx, run=False).decisions] == ["seen"]  # stays dead by itself

    job_id = str(outcomes[-1].job_id)
    invoke("jobs", "retry", job_id, "--attempts", "1", "--reason", "hub is back", *_db_options(ctx))

    assert [o.state for o in sync_once(ctx).outcomes] == ["published"]
    detail = json.loads(invoke("jobs", "show", job_id, *_db_options(ctx), "--format", "json"))
    assert (detail["state"], detail["attempts"], detail["max_attempts"]) == ("published", 4, 4)
