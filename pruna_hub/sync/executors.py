"""Where claimed jobs run: in this process (default), or as Ray tasks on a cluster.

Both executors claim jobs from the catalogue in the calling process, so the catalogue stays the one
record of job state and the lease/attempt budget decides retries. Ray's own task retries are off
(``max_retries=0``): a task that dies (worker crash, OOM, node lost) is recorded as a failed attempt by
the driver under the job's lease, and the job is queued again while attempts are left.

Ray is an optional extra (``pip install .[ray]``); nothing here imports it unless the Ray executor runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pruna_hub.errors import PrunaHubError
from pruna_hub.sync.job import JobOutcome, release, run_job
from registry_db.errors import LeaseLostError
from registry_db.store import Lease

if TYPE_CHECKING:
    from pruna_hub.settings import Settings
    from pruna_hub.sync.context import SyncContext


def claim(ctx: SyncContext) -> Lease | None:
    """The next runnable job of this context's namespace, leased to this worker (retried across a lost
    database connection), or None."""
    return ctx.store.claim(ctx.owner, lease_for=ctx.lease_for)


def work(
    ctx: SyncContext,
    *,
    max_jobs: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[JobOutcome]:
    """Claim and run runnable jobs one at a time until none is left (or ``max_jobs``, or a stop request)."""
    outcomes: list[JobOutcome] = []
    while (max_jobs is None or len(outcomes) < max_jobs) and not should_stop():
        lease = claim(ctx)
        if lease is None:
            break
        ctx.report(f"job {lease.job_id}: claimed (attempt {lease.attempt})")
        outcomes.append(run_job(ctx, lease))
    return outcomes


class ExecutorError(PrunaHubError, RuntimeError):
    exit_code = 2


class Executor(Protocol):
    name: str

    def drain(
        self, ctx: SyncContext, *, max_jobs: int | None = None, should_stop: Callable[[], bool] = ...
    ) -> list[JobOutcome]:
        """Run runnable jobs until none is left (or ``max_jobs``, or ``should_stop``)."""
        ...


class InProcessExecutor:
    name = "inprocess"

    def drain(
        self,
        ctx: SyncContext,
        *,
        max_jobs: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[JobOutcome]:
        return work(ctx, max_jobs=max_jobs, should_stop=should_stop)


def _run_in_ray_task(settings: Settings, lease: Lease) -> dict[str, Any]:
    """The body of a Ray task: a fresh context on the worker (its own catalogue connection and Hub
    client), the same ``run_job`` as in process, the outcome sent back as plain data."""
    from pruna_hub.sync.context import SyncContext

    ctx = SyncContext.open(settings)
    try:
        return run_job(ctx, lease).to_dict() | {"job_id": lease.job_id}
    finally:
        ctx.close()


@dataclass
class RayExecutor:
    """Submits each claimed job as a Ray task asking for what its recipe needs (1 GPU for CUDA recipes).

    ``address=None`` starts a local Ray for the run (``num_cpus`` of this machine); otherwise it joins the
    existing cluster (``ray://...`` or ``auto``). ``parallelism`` bounds the jobs leased at once.
    """

    address: str | None = None
    num_cpus: int | None = None
    parallelism: int = 2
    name: str = "ray"

    def _init(self) -> Any:
        try:
            import ray
        except ImportError as e:
            raise ExecutorError(
                "the Ray executor needs Ray: pip install 'pruna-hub[ray]' (or use --executor inprocess)"
            ) from e
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith(("HF_", "PRUNA_HUB_", "OMP_"))}
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus if self.address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": env},
            )
        return ray

    def drain(
        self,
        ctx: SyncContext,
        *,
        max_jobs: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[JobOutcome]:
        ray = self._init()
        running: dict[Any, Lease] = {}
        try:
            return self._drain(ctx, ray, running, max_jobs=max_jobs, should_stop=should_stop)
        except KeyboardInterrupt:
            _cancel(ctx, ray, running)
            raise

    def _drain(
        self,
        ctx: SyncContext,
        ray: Any,
        running: dict[Any, Lease],
        *,
        max_jobs: int | None,
        should_stop: Callable[[], bool],
    ) -> list[JobOutcome]:
        task = ray.remote(max_retries=0)(_run_in_ray_task)
        outcomes: list[JobOutcome] = []
        claimed = 0
        while True:
            while (
                len(running) < self.parallelism
                and (max_jobs is None or claimed < max_jobs)
                and not should_stop()
            ):
                lease = claim(ctx)
                if lease is None:
                    break
                claimed += 1
                ref = task.options(num_cpus=1, num_gpus=self._gpus(ctx, lease)).remote(ctx.settings, lease)
                running[ref] = lease
                ctx.report(f"job {lease.job_id}: submitted to Ray (attempt {lease.attempt})")
            if not running:
                return outcomes
            done, _ = ray.wait(list(running), num_returns=1)
            lease = running.pop(done[0])
            outcomes.append(self._collect(ctx, ray, done[0], lease))

    def _gpus(self, ctx: SyncContext, lease: Lease) -> int:
        name = ctx.store.recipe_name(lease.recipe_id) or ""
        recipe = ctx.book.get(name) if name in ctx.book else None
        return 1 if recipe is not None and recipe.device == "cuda" else 0

    def _collect(self, ctx: SyncContext, ray: Any, ref: Any, lease: Lease) -> JobOutcome:
        try:
            data = ray.get(ref)
        except Exception as e:  # the task died: a crash the job itself could not record
            return _record_crash(ctx, lease, e)
        outcome = JobOutcome(lease.job_id)
        outcome.__dict__.update(data)
        return outcome


def _cancel(ctx: SyncContext, ray: Any, running: dict[Any, Lease]) -> None:
    """Ctrl-C: stop the submitted tasks and give their jobs back at once (queued, the attempt not counted)
    rather than leave them leased until their leases expire. A task that finished meanwhile keeps its
    result: its lease is no longer held, so the release of that job is refused and reported."""
    for ref, lease in running.items():
        ray.cancel(ref, force=True)
        release(ctx, lease)


def _record_crash(ctx: SyncContext, lease: Lease, error: BaseException) -> JobOutcome:
    message = f"the Ray task running the job died: {type(error).__name__}: {str(error).splitlines()[0]}"
    outcome = JobOutcome(lease.job_id, state="failed", error=message)
    try:
        outcome.state = ctx.store.fail(
            lease,
            error_type="WorkerCrashed",
            message=message,
            retry_after=timedelta(seconds=ctx.settings.retry_base_seconds),
        )
    except LeaseLostError:
        outcome.state = "lease_lost"
    ctx.report(f"job {lease.job_id}: {outcome.state} ({message})")
    return outcome


def make_executor(name: str, *, ray_address: str | None = None, parallelism: int = 2) -> Executor:
    if name == "inprocess":
        return InProcessExecutor()
    if name == "ray":
        return RayExecutor(address=ray_address, parallelism=parallelism)
    raise ExecutorError(f"unknown executor {name!r}; use inprocess or ray")
