"""Job control by hand (registry_db.control) on SQLite and PostgreSQL: which state each action applies to,
the new attempt budget, the audit log, and a cancelled running job's worker losing its lease."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry_db.control import JobSelector, control_jobs, list_jobs, show_job
from registry_db.errors import CatalogueValueError, JobActionError, LeaseLostError, NotFoundError
from registry_db.jobs import advance_job, claim_next_job, create_or_get_job, fail_job, get_job
from registry_db.records import upsert_base_model, upsert_recipe
from registry_db.session import Catalogue
from registry_db.testing import seed_catalogue

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _selector(catalogue: Catalogue, *ids: int, **kw: str) -> JobSelector:
    return JobSelector(catalogue.namespace, ids=ids, **kw)


def test_a_failed_job_is_retried_with_a_new_budget_and_runs_again(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        seeded = seed_catalogue(session, catalogue.namespace)
    failed = seeded["failed"]
    with catalogue.session() as session:
        [event] = control_jobs(
            session,
            "retry",
            _selector(catalogue, failed),
            actor="ana@ops",
            reason="hub fixed",
            attempts=2,
            now=T0,
        )
    assert (event.from_state, event.to_state, event.max_attempts) == ("failed", "queued", 3)
    with catalogue.session() as session:
        job = get_job(session, failed)
        assert (job.state, job.attempts, job.max_attempts, job.finished_at) == ("queued", 1, 3, None)
        lease = claim_next_job(session, "w", namespace=catalogue.namespace, now=T0 + timedelta(seconds=1))
        # The seeded queued job is older; claim until the retried one comes up.
        while lease is not None and lease.job_id != failed:
            lease = claim_next_job(session, "w", namespace=catalogue.namespace, now=T0 + timedelta(seconds=1))
    assert lease is not None and lease.attempt == 2
    with catalogue.read_session() as session:
        detail = show_job(session, failed, namespace=catalogue.namespace)
    assert [(e.action, e.actor, e.reason, e.created_at) for e in detail.events] == [
        ("retry", "ana@ops", "hub fixed", T0)
    ]
    assert detail.last_error_type == "QualityGateError"  # kept until the next attempt replaces it


def test_each_action_applies_only_to_its_states(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        seeded = seed_catalogue(session, catalogue.namespace)
    published = next(iter(seeded["jobs"].values()))
    for action in ("retry", "requeue", "cancel"):
        refused = pytest.raises(JobActionError, match=rf"job {published} is .published.*jobs show")
        with refused, catalogue.session() as session:
            control_jobs(session, action, _selector(catalogue, published), actor="a", reason="r")
    with pytest.raises(NotFoundError, match="no job 999999"), catalogue.session() as session:
        control_jobs(session, "retry", _selector(catalogue, 999999), actor="a", reason="r")
    with pytest.raises(CatalogueValueError, match="reason"), catalogue.session() as session:
        control_jobs(session, "cancel", _selector(catalogue, seeded["queued"]), actor="a", reason=" ")
    with pytest.raises(CatalogueValueError, match="selector"), catalogue.session() as session:
        control_jobs(session, "cancel", _selector(catalogue), actor="a", reason="r")


def test_named_jobs_change_all_or_nothing(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        seeded = seed_catalogue(session, catalogue.namespace)
    published = next(iter(seeded["jobs"].values()))
    with pytest.raises(JobActionError), catalogue.session() as session:
        control_jobs(
            session, "cancel", _selector(catalogue, seeded["queued"], published), actor="a", reason="r"
        )
    with catalogue.read_session() as session:
        assert get_job(session, seeded["queued"]).state == "queued"


def test_cancel_then_requeue_by_base_and_state(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        seeded = seed_catalogue(session, catalogue.namespace)
    with catalogue.session() as session:
        events = control_jobs(
            session, "cancel", _selector(catalogue, base_repo="org/llama-b"), actor="bo", reason="bad base"
        )
    # org/llama-b has one published job (left alone: it is finished) and the queued one.
    assert [(e.job_id, e.to_state) for e in events] == [(seeded["queued"], "skipped")]
    with catalogue.read_session() as session:
        assert get_job(session, seeded["queued"]).skip_reason == "cancelled by bo: bad base"
        skipped = list_jobs(session, _selector(catalogue, state="skipped"))
    assert {r.id for r in skipped} == {seeded["queued"], seeded["skipped"]}
    with catalogue.session() as session:
        events = control_jobs(
            session, "requeue", _selector(catalogue, state="skipped"), actor="bo", reason="try anyway"
        )
    assert {e.job_id for e in events} == {seeded["queued"], seeded["skipped"]}
    with catalogue.read_session() as session:
        job = get_job(session, seeded["skipped"])
        assert (job.state, job.skip_reason, job.max_attempts) == ("queued", None, 3)
        history = show_job(session, seeded["queued"], namespace=catalogue.namespace).events
    assert [(e.action, e.from_state, e.to_state) for e in history] == [
        ("cancel", "queued", "skipped"),
        ("requeue", "skipped", "queued"),
    ]
    with pytest.raises(NotFoundError, match="failed job"), catalogue.session() as session:
        control_jobs(session, "retry", _selector(catalogue, base_repo="org/llama-b"), actor="a", reason="r")


def test_cancelling_a_running_job_takes_its_lease(catalogue: Catalogue) -> None:
    ns = catalogue.namespace
    with catalogue.session() as session:
        base = upsert_base_model(session, namespace=ns, repo_id="org/m", revision="r" * 40)
        recipe = upsert_recipe(session, namespace=ns, name="x", content_hash="x" * 64, smash_config={})
        job, _ = create_or_get_job(session, base, recipe, now=T0)
        lease = claim_next_job(session, "worker-1", namespace=ns, now=T0)
    assert lease is not None
    with catalogue.session() as session:
        control_jobs(session, "cancel", _selector(catalogue, job.id), actor="a", reason="stop it")
    with pytest.raises(LeaseLostError), catalogue.session() as session:
        advance_job(session, lease, "smashed")
    with pytest.raises(LeaseLostError), catalogue.session() as session:
        fail_job(session, lease, error_type="X", message="late")
    with catalogue.read_session() as session:
        record = show_job(session, job.id, namespace=ns)
    assert (record.state, record.lease_owner, record.last_error_type) == ("skipped", None, None)


def test_other_namespaces_are_never_touched(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        seeded = seed_catalogue(session, catalogue.namespace)
    other = JobSelector("someone-else", ids=(seeded["failed"],))
    with pytest.raises(NotFoundError), catalogue.session() as session:
        control_jobs(session, "retry", other, actor="a", reason="r")
    with catalogue.read_session() as session:
        assert list_jobs(session, JobSelector("someone-else", state="failed")) == []
