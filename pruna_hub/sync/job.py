"""One claimed job, start to finish: download, smash, evaluate, gate, save, card, publish, verify.

Every step is recorded in the catalogue as it happens (``smashed``, ``benchmarked``, benchmark runs, the
artifact, its verification, ``published``), under the worker's lease; a heartbeat thread keeps the lease
alive through long steps. The job is safe to run again after a crash at any point:

- the published commit is tagged with the base revision, so a rerun that finds the tag in the target
  repo adopts that commit (records it, verifies it) instead of smashing and publishing again;
- ``publish_folder`` reuses a repo that was created but never committed to.

Failures: a transient Hub error is retried by queueing the job again with exponential backoff while the
job's attempt budget lasts; anything else fails the job with its error type and message. A failed
quality gate fails the job with the measured numbers and publishes nothing; when the recipe was one of a
``rank_by`` tie, the tie's next recipe is queued for the same base revision (``sync.fallback``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pruna_hub import metrics
from pruna_hub.errors import (
    HubConflictError,
    HubError,
    HubNotFoundError,
    HubRateLimitedError,
    JobPlanError,
    QualityGateError,
)
from pruna_hub.recipes import Recipe
from pruna_hub.sync.artifact import build_artifact_folder, evaluation_metrics, verify_artifact
from pruna_hub.sync.context import SyncContext
from pruna_hub.sync.fallback import queue_next_tied
from pruna_hub.sync.heartbeat import Heartbeat
from pruna_hub.sync.plan import Plan, commit_title, publication_tag
from registry_db.errors import CatalogueError, LeaseLostError
from registry_db.store import BenchmarkRecord, Lease
from smash.artifact_files import GGUF_FILES, LOADER_PATTERNS

logger = logging.getLogger(__name__)

# The base snapshot: what transformers needs to load it (the loader's own list, minus smash's files).
BASE_PATTERNS = [p for p in LOADER_PATTERNS if not p.startswith("smash_") and p not in GGUF_FILES] + [
    "*.safetensors.index.json"
]


@dataclass
class JobOutcome:
    job_id: int
    base_repo_id: str = ""
    revision: str = ""
    recipe: str = ""
    state: str = "running"
    target_repo_id: str | None = None
    commit_sha: str | None = None
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    next_job_id: int | None = None  # a failed gate in a rank_by tie: the job queued for the next recipe

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, "")}


def _published_commit(ctx: SyncContext, plan: Plan) -> str | None:
    """The commit already published for this job: the tagged one, or (after a crash between the commit
    and the tag) the newest commit of main made for this base revision and recipe, which gets its tag."""
    tagged = ctx.hub.tag_target(plan.target_repo_id, plan.tag)
    if tagged is not None:
        return tagged
    try:
        commits = ctx.hub.commits(plan.target_repo_id)
    except HubNotFoundError:
        return None
    title = commit_title(plan)
    sha: str | None = next((c.commit_id for c in commits if c.title == title), None)
    if sha is not None:
        ctx.hub.tag(plan.target_repo_id, plan.tag, revision=sha)
    return sha


def plan_job(ctx: SyncContext, lease: Lease) -> Plan:
    subject = ctx.store.subject(lease)
    repo_id, revision, license_ = subject.repo_id, subject.revision, subject.license
    name, content_hash = subject.recipe_name, subject.recipe_hash
    if name not in ctx.book:
        raise JobPlanError(lease.job_id, f"recipe {name!r} is no longer loaded", "Add its directory back.")
    recipe = ctx.book.get(name)
    if recipe.content_hash != content_hash:
        raise JobPlanError(
            lease.job_id,
            f"recipe {name!r} changed since the job was queued ({content_hash[:12]} -> "
            f"{recipe.content_hash[:12]})",
            "The next discovery queues a new job for the new recipe.",
        )
    target = recipe.repo_id(repo_id, target_org=ctx.settings.target_org)
    return Plan(lease.job_id, repo_id, revision, license_, recipe, target, publication_tag(revision))


def run_job(ctx: SyncContext, lease: Lease) -> JobOutcome:
    """Run a claimed job to a final (or re-queued) state; never raises for a job-level failure."""
    outcome = JobOutcome(lease.job_id)
    plan: Plan | None = None
    try:
        plan = plan_job(ctx, lease)
        outcome.base_repo_id, outcome.revision, outcome.recipe = (
            plan.base_repo_id,
            plan.revision,
            plan.recipe.name,
        )
        outcome.target_repo_id = plan.target_repo_id
        with Heartbeat(ctx.catalogue, lease, lease_for=ctx.lease_for) as heartbeat:
            _execute(ctx, plan, heartbeat, outcome)
    except LeaseLostError as e:
        outcome.state, outcome.error = "lease_lost", str(e)
        ctx.report(f"job {lease.job_id}: lease lost, another worker owns it now ({e})")
    except Exception as e:
        _record_failure(ctx, lease, e, outcome)
        if isinstance(e, QualityGateError) and plan is not None and outcome.state == "failed":
            outcome.next_job_id = queue_next_tied(
                ctx, plan.recipe, lease.base_model_id, plan.base_repo_id, plan.revision, lease.job_id
            )
    except KeyboardInterrupt:
        release(ctx, lease)
        raise
    return outcome


def release(ctx: SyncContext, lease: Lease) -> None:
    """Ctrl-C: give the job back at once (queued, the attempt not counted) rather than leave it leased
    until the lease expires; a rerun adopts whatever this attempt already published."""
    try:
        ctx.store.release(lease)
        ctx.report(f"job {lease.job_id}: interrupted; released back to the queue")
    except CatalogueError as e:  # the lease then simply expires
        ctx.report(f"job {lease.job_id}: interrupted; could not release it ({e})")


def _execute(ctx: SyncContext, plan: Plan, heartbeat: Heartbeat, outcome: JobOutcome) -> None:
    existing = _published_commit(ctx, plan)
    if existing is not None:
        ctx.report(f"job {plan.job_id}: {plan.target_repo_id} already holds {plan.tag}; adopting it")
        _adopt(ctx, plan, heartbeat.lease, existing, outcome)
        return
    # One folder per attempt: a stale worker resuming after its lease expired cleans up its own files,
    # never those of the worker that took the job over (they once shared work/job-<id>).
    root = ctx.settings.resolved_work_dir()
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"job-{plan.job_id}-attempt-{heartbeat.lease.attempt}-", dir=root))
    try:
        _smash_and_publish(ctx, plan, heartbeat, workdir, outcome)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _smash_and_publish(
    ctx: SyncContext, plan: Plan, heartbeat: Heartbeat, workdir: Path, outcome: JobOutcome
) -> None:
    ctx.report(f"job {plan.job_id}: downloading {plan.base_repo_id}@{plan.revision[:12]}")
    base_path = ctx.hub.download(plan.base_repo_id, revision=plan.revision, allow_patterns=BASE_PATTERNS)
    base, tokenizer = ctx.steps.load_base(base_path, device=ctx.device)
    ctx.report(f"job {plan.job_id}: smashing with {plan.recipe.name} ({' -> '.join(plan.recipe.order)})")
    with metrics.time_step("smash"):
        smashed = ctx.steps.smash(base, plan.recipe, tokenizer=tokenizer, device=ctx.device)
    ctx.store.advance(heartbeat.lease, "smashed")
    folder = workdir / "artifact"
    smashed.save_pretrained(folder)
    ctx.report(f"job {plan.job_id}: evaluating against the base")
    with metrics.time_step("evaluate"):
        report = ctx.steps.evaluate(
            base, smashed, plan.recipe, tokenizer, base_path=base_path, smashed_path=folder
        )
    outcome.metrics = evaluation_metrics(report)
    _record_runs(ctx, plan, heartbeat.lease, report)
    failures = _gate(plan.recipe, report)
    if failures:
        raise QualityGateError(plan.recipe.name, failures)
    ctx.store.advance(heartbeat.lease, "benchmarked")
    build_artifact_folder(ctx, plan, smashed, report, folder)
    ctx.report(f"job {plan.job_id}: publishing {plan.target_repo_id}")
    try:
        with metrics.time_step("publish"):
            sha = _publish(ctx, plan, heartbeat, folder)
    except HubConflictError:
        # main moved since its head was read: most likely a worker that took this job over published.
        _fence(ctx, heartbeat)  # LeaseLostError if so: stop here, their publication stands
        existing = _published_commit(ctx, plan)
        if existing is not None:
            _adopt(ctx, plan, heartbeat.lease, existing, outcome)
            return
        sha = _publish(ctx, plan, heartbeat, folder)  # someone else's commit: once more, on the new head
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    _finish(ctx, plan, heartbeat.lease, sha, files, outcome, reference=(smashed, tokenizer))


def _fence(ctx: SyncContext, heartbeat: Heartbeat) -> None:
    """Renew the lease now, in its own transaction: LeaseLostError when another worker holds the job."""
    heartbeat.lease = ctx.store.renew(heartbeat.lease, lease_for=ctx.lease_for)


def _publish(ctx: SyncContext, plan: Plan, heartbeat: Heartbeat, folder: Path) -> str:
    """One commit fenced by the lease: checked right before it, on the head read just before that."""
    publication = ctx.hub.publish_folder(
        plan.target_repo_id,
        folder,
        tag=plan.tag,
        commit_message=commit_title(plan),
        fence=lambda: _fence(ctx, heartbeat),
    )
    return publication.commit_sha


def _adopt(ctx: SyncContext, plan: Plan, lease: Lease, commit_sha: str, outcome: JobOutcome) -> None:
    files = ctx.hub.file_sizes(plan.target_repo_id, revision=commit_sha)
    _finish(ctx, plan, lease, commit_sha, files, outcome, reference=None)


def _finish(
    ctx: SyncContext,
    plan: Plan,
    lease: Lease,
    commit_sha: str,
    files: dict[str, int],
    outcome: JobOutcome,
    *,
    reference: tuple[Any, Any] | None,
) -> None:
    relation = _relation(plan.recipe)
    artifact_id = ctx.store.record_artifact(
        lease,
        repo_id=plan.target_repo_id,
        commit_sha=commit_sha,
        files=files,
        tag=plan.tag,
        relation=relation,
    )
    ctx.report(f"job {plan.job_id}: verifying {plan.target_repo_id}@{commit_sha[:12]} loads and runs")
    with metrics.time_step("verify"):
        verified, message = verify_artifact(ctx, plan.target_repo_id, commit_sha, reference=reference)

    ctx.store.finish(lease, artifact_id, verified=verified, message=message)
    metrics.job_finished("published" if verified else "failed")
    outcome.state = "published" if verified else "failed"
    outcome.commit_sha = commit_sha
    outcome.error = None if verified else message


def _relation(recipe: Recipe) -> str:
    """The lineage relation of the published copy, from the groups of the recipe's algorithms."""
    from smash import registry

    groups = {registry.get(name).group.value for name in recipe.order}
    for group, relation in (("quantizer", "quantized"), ("pruner", "pruned"), ("distiller", "distilled")):
        if group in groups:
            return relation
    return "compiled"


def _gate(recipe: Recipe, report: Any) -> list[str]:
    """The recipe's gate on the report: quality, and speed as decode (generative models) or forward
    latency (encoders, classifiers) of the smashed model over the base's."""
    base, smashed = report.base.decode_latency_s, report.smashed.decode_latency_s
    decode = (
        smashed.median / base.median if base is not None and smashed is not None and base.median else None
    )
    quality = report.quality.to_dict() if report.quality is not None else {}
    if report.base.ttft_s.mean:
        quality["latency_ratio"] = report.smashed.ttft_s.mean / report.base.ttft_s.mean
    return recipe.quality_gate.failures_from(quality, decode_ratio=decode)


def _record_runs(ctx: SyncContext, plan: Plan, lease: Lease, report: Any) -> None:
    from pruna_hub.sync.artifact import hardware_of, run_metrics, versions_of

    data = report.to_dict()
    runs = [
        BenchmarkRecord(
            subject=subject,
            metrics=tuple(run_metrics(efficiency, report.quality if subject == "smashed" else None)),
            settings=data["settings"],
            hardware=hardware_of(report, ctx.device),
            library_versions=versions_of(report),
            report=data,
        )
        for subject, efficiency in (("base", report.base), ("smashed", report.smashed))
    ]
    ctx.store.record_runs(lease, runs)


def _record_failure(ctx: SyncContext, lease: Lease, error: BaseException, outcome: JobOutcome) -> None:
    retry = _retry_delay(error, lease.attempt, base=timedelta(seconds=ctx.settings.retry_base_seconds))
    message = str(error) or type(error).__name__
    if not isinstance(error, HubError | QualityGateError | JobPlanError):
        logger.debug("job %s failed:\n%s", lease.job_id, "".join(traceback.format_exception(error)))
    try:
        state = ctx.store.fail(
            lease, error_type=type(error).__name__, message=message[:4000], retry_after=retry
        )
    except LeaseLostError as e:
        outcome.state, outcome.error = "lease_lost", str(e)
        return
    metrics.job_finished(state)
    outcome.state, outcome.error = state, f"{type(error).__name__}: {message}"
    ctx.report(f"job {lease.job_id}: {state} ({type(error).__name__}: {message.splitlines()[0]})")


def _retry_delay(error: BaseException, attempt: int, *, base: timedelta) -> timedelta | None:
    """Backoff before the next attempt of a transient failure; None fails the job for good."""
    if not (isinstance(error, HubError) and error.retryable):
        return None
    delay = base * (2 ** max(attempt - 1, 0))
    if isinstance(error, HubRateLimitedError) and error.retry_after:
        delay = max(delay, timedelta(seconds=error.retry_after))
    return delay
