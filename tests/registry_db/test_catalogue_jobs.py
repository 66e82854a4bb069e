"""Jobs: idempotent creation, the leased state machine, lease expiry and renewal, retries, and many worker
processes claiming the same queue with real connections (0 double claims)."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry_db.errors import CatalogueValueError, JobStateError, LeaseLostError
from registry_db.jobs import (
    advance_job,
    claim_next_job,
    complete_job,
    create_or_get_job,
    expire_leases,
    fail_job,
    get_job,
    job_counts,
    queue_job,
    release_job,
    renew_lease,
    skip_job,
)
from registry_db.models import BaseModel, Job, Recipe
from registry_db.records import upsert_base_model, upsert_recipe
from registry_db.session import Catalogue
from registry_db.testing import claim_until_empty

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _base_and_recipe(session: Session, namespace: str, repo: str = "org/model") -> tuple[BaseModel, Recipe]:
    base = upsert_base_model(session, namespace=namespace, repo_id=repo, revision="r" * 40)
    recipe = upsert_recipe(
        session,
        namespace=namespace,
        name="r",
        content_hash="h",
        smash_config={"format_version": 1, "algorithms": {"hqq": {}}},
    )
    return base, recipe


def _new_jobs(catalogue: Catalogue, count: int, *, max_attempts: int = 3) -> list[int]:
    with catalogue.session() as session:
        recipe = upsert_recipe(
            session,
            namespace=catalogue.namespace,
            name="r",
            content_hash="h",
            smash_config={"algorithms": {}},
        )
        ids = []
        for i in range(count):
            base = upsert_base_model(
                session, namespace=catalogue.namespace, repo_id=f"org/m{i}", revision="r"
            )
            job, created = create_or_get_job(session, base, recipe, max_attempts=max_attempts, now=T0)
            assert created
            ids.append(job.id)
        return ids


def test_same_base_revision_and_recipe_is_the_same_job(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        base, recipe = _base_and_recipe(session, catalogue.namespace)
        first, created = create_or_get_job(session, base, recipe)
        again, created_again = create_or_get_job(session, base, recipe, state="discovered")
    assert created and not created_again
    assert first.id == again.id and again.state == "queued"
    assert first.idempotency_key == f"org/model@{'r' * 40}#h"


def test_a_new_base_revision_is_a_new_job(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        base, recipe = _base_and_recipe(session, catalogue.namespace)
        newer = upsert_base_model(
            session, namespace=catalogue.namespace, repo_id="org/model", revision="s" * 40
        )
        first, _ = create_or_get_job(session, base, recipe)
        second, created = create_or_get_job(session, newer, recipe)
    assert created and second.id != first.id


def test_full_lifecycle_under_one_lease(catalogue: Catalogue) -> None:
    (job_id,) = _new_jobs(catalogue, 1)
    with catalogue.session() as session:
        lease = claim_next_job(session, "w1", namespace=catalogue.namespace, now=T0)
        assert lease is not None and (lease.job_id, lease.attempt) == (job_id, 1)
        assert claim_next_job(session, "w2", namespace=catalogue.namespace, now=T0) is None
        advance_job(session, lease, "smashed", now=T0)
        advance_job(session, lease, "benchmarked", now=T0)
        complete_job(session, lease, now=T0 + MINUTE)
        job = get_job(session, job_id)
    assert (job.state, job.attempts, job.lease_owner, job.lease_expires_at) == ("published", 1, None, None)
    assert job.finished_at == T0 + MINUTE and job.finished_at.tzinfo is not None
    with catalogue.session() as session, pytest.raises(LeaseLostError):
        complete_job(session, lease)


def test_expired_lease_is_claimed_again_with_one_more_attempt(catalogue: Catalogue) -> None:
    (job_id,) = _new_jobs(catalogue, 1)
    ns = catalogue.namespace
    with catalogue.session() as session:
        dead = claim_next_job(session, "dead-worker", namespace=ns, lease_for=5 * MINUTE, now=T0)
        assert dead is not None
        advance_job(session, dead, "smashed", now=T0)
    with catalogue.session() as session:
        assert claim_next_job(session, "w2", namespace=ns, now=T0 + 4 * MINUTE) is None  # still leased
        taken = claim_next_job(session, "w2", namespace=ns, lease_for=5 * MINUTE, now=T0 + 6 * MINUTE)
    assert taken is not None and taken.job_id == job_id and taken.attempt == 2
    with catalogue.session() as session:
        job = get_job(session, job_id)
        assert (job.state, job.lease_owner, job.attempts) == ("running", "w2", 2)
    # The first worker wakes up: every transition it tries is refused, and nothing it held is changed.
    for action in (
        lambda s: renew_lease(s, dead, now=T0 + 7 * MINUTE),
        lambda s: complete_job(s, dead),
        lambda s: fail_job(s, dead, error_type="X", message="late"),
    ):
        with catalogue.session() as session, pytest.raises(LeaseLostError, match="dead-worker"):
            action(session)
    with catalogue.session() as session:
        complete_job(session, taken, now=T0 + 8 * MINUTE)
        assert get_job(session, job_id).state == "published"


def test_heartbeat_keeps_the_lease(catalogue: Catalogue) -> None:
    _new_jobs(catalogue, 1)
    ns = catalogue.namespace
    with catalogue.session() as session:
        lease = claim_next_job(session, "w1", namespace=ns, lease_for=5 * MINUTE, now=T0)
        assert lease is not None
        for minute in (4, 8, 12):
            lease = renew_lease(session, lease, lease_for=5 * MINUTE, now=T0 + minute * MINUTE)
        assert lease.expires_at == T0 + 17 * MINUTE
        assert claim_next_job(session, "w2", namespace=ns, now=T0 + 16 * MINUTE) is None
        assert claim_next_job(session, "w2", namespace=ns, now=T0 + 18 * MINUTE) is not None


def test_lease_expired_on_the_last_attempt_fails_the_job(catalogue: Catalogue) -> None:
    (job_id,) = _new_jobs(catalogue, 1, max_attempts=2)
    ns = catalogue.namespace
    with catalogue.session() as session:
        for i in range(2):
            assert claim_next_job(session, f"w{i}", namespace=ns, lease_for=MINUTE, now=T0 + 2 * i * MINUTE)
        assert claim_next_job(session, "w9", namespace=ns, now=T0 + 10 * MINUTE) is None
        job = get_job(session, job_id)
        assert (job.state, job.attempts, job.last_error_type) == ("failed", 2, "LeaseExpired")
        assert expire_leases(session, namespace=ns, now=T0 + 20 * MINUTE) == 0


def test_failure_with_retry_waits_then_exhausts_the_budget(catalogue: Catalogue) -> None:
    (job_id,) = _new_jobs(catalogue, 1, max_attempts=2)
    ns = catalogue.namespace
    with catalogue.session() as session:
        lease = claim_next_job(session, "w1", namespace=ns, now=T0)
        assert lease is not None
        state = fail_job(
            session, lease, error_type="HfHubHTTPError", message="503", retry_after=MINUTE, now=T0
        )
        assert state == "queued"
        assert claim_next_job(session, "w1", namespace=ns, now=T0 + MINUTE / 2) is None  # backoff
        lease = claim_next_job(session, "w1", namespace=ns, now=T0 + MINUTE)
        assert lease is not None and lease.attempt == 2
        state = fail_job(session, lease, error_type="HfHubHTTPError", message="503 again", retry_after=MINUTE)
        job = get_job(session, job_id)
    assert state == "failed"
    assert (job.state, job.last_error_type, job.last_error_message) == (
        "failed",
        "HfHubHTTPError",
        "503 again",
    )


def test_release_gives_the_job_back_without_spending_an_attempt(catalogue: Catalogue) -> None:
    (job_id,) = _new_jobs(catalogue, 1)
    with catalogue.session() as session:
        lease = claim_next_job(session, "w1", namespace=catalogue.namespace, now=T0)
        assert lease is not None
        release_job(session, lease, now=T0)
        again = claim_next_job(session, "w2", namespace=catalogue.namespace, now=T0)
    assert again is not None and again.job_id == job_id and again.attempt == 1


def test_skip_and_queue_transitions(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        base, recipe = _base_and_recipe(session, catalogue.namespace)
        job, _ = create_or_get_job(session, base, recipe, state="discovered")
        assert (
            claim_next_job(session, "w", namespace=catalogue.namespace) is None
        )  # discovered is not runnable
        queue_job(session, job.id)
        skip_job(session, job.id, "larger than the size budget")
        skipped = get_job(session, job.id)
        assert (skipped.state, skipped.skip_reason) == ("skipped", "larger than the size budget")
        with pytest.raises(JobStateError, match="skipped"):
            queue_job(session, job.id)


def test_bad_job_input_is_a_value_error(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        base, recipe = _base_and_recipe(session, catalogue.namespace)
        with pytest.raises(CatalogueValueError, match="skip_reason"):
            create_or_get_job(session, base, recipe, state="skipped")
        with pytest.raises(CatalogueValueError, match="'exploded'"):
            create_or_get_job(session, base, recipe, state="exploded")
        with pytest.raises(ValueError, match="max_attempts"):
            create_or_get_job(session, base, recipe, max_attempts=0)


def test_namespaces_do_not_see_each_others_jobs(db_url: str, namespace: str) -> None:
    with Catalogue.open(db_url, namespace=f"{namespace}-a") as acme, Catalogue.open(db_url) as other:
        _new_jobs(acme, 2)
        with other.session() as session:
            base, recipe = _base_and_recipe(session, f"{namespace}-b", repo="org/m0")  # same public model
            create_or_get_job(session, base, recipe)
            assert claim_next_job(session, "b", namespace=f"{namespace}-c") is None
            lease = claim_next_job(session, "b", namespace=f"{namespace}-b")
            assert lease is not None and get_job(session, lease.job_id).namespace == f"{namespace}-b"
            assert job_counts(session, namespace=f"{namespace}-a")["queued"] == 2
            assert job_counts(session, namespace=f"{namespace}-b")["running"] == 1


def _race(catalogue: Catalogue, url: str, workers: int, jobs: int) -> None:
    ids = _new_jobs(catalogue, jobs)
    context = multiprocessing.get_context("spawn")
    # A barrier, not an event set after submitting: on a fast host one spawned worker drained all the
    # jobs before the other had even started (2026-11-30, "the workers did not race").
    start = context.Manager().Barrier(workers)
    with context.Pool(workers) as pool:
        pending = [
            pool.apply_async(claim_until_empty, (url, catalogue.namespace, f"worker-{i}", start))
            for i in range(workers)
        ]
        done = [p.get(timeout=300) for p in pending]
    claims = Counter(job_id for worker in done for job_id in worker)
    assert sorted(claims) == sorted(ids)
    assert [job_id for job_id, n in claims.items() if n > 1] == []  # 0 double claims
    assert sum(1 for worker in done if worker) >= 2, "the workers did not race"
    with catalogue.read_session() as session:
        rows = session.execute(
            select(Job.state, Job.attempts).where(Job.namespace == catalogue.namespace)
        ).all()
    assert Counter(rows) == Counter({("published", 1): jobs})


@pytest.mark.slow  # several processes; ~10 s on a loaded 2-core machine
@pytest.mark.parametrize("backend", ["postgresql"])
def test_four_postgres_workers_claim_200_jobs_exactly_once(catalogue: Catalogue, db_url: str) -> None:
    _race(catalogue, db_url, workers=4, jobs=200)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_two_sqlite_workers_claim_200_jobs_exactly_once(catalogue: Catalogue, db_url: str) -> None:
    _race(catalogue, db_url, workers=2, jobs=200)
