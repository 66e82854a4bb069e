"""`pruna-hub sync`: discover new models, smash, evaluate, publish and verify them.

Thin: options become ``Settings`` (flags > environment > config file, see ``pruna_hub.settings``), the
work is ``pruna_hub.sync.service``. Progress is the service's ``ctx.report`` messages, logged at INFO by
the ``pruna_hub.sync`` logger (stderr; ``-q`` hides them, ``--log-format json`` for collectors). Data goes
to stdout: in table mode one line per decision and per job outcome, the card of each published repo and
a one-line summary; ``--format json`` prints everything, catalogue entries included. The token is never
printed.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pruna_hub.cli.logs import SYNC_LOGGER, progress_reporter
from pruna_hub.cli.options import (
    config_option,
    database_url_option,
    device_option,
    format_option,
    local_hub_endpoint,
    local_hub_option,
    recipe_dir_option,
)
from pruna_hub.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(SYNC_LOGGER)


class StopFlag:
    """Set by SIGTERM: the current job finishes, then the loop stops. (SIGINT, Ctrl-C, stops at once and
    releases the current job back to the queue: see ``pruna_hub.sync.job.run_job``; with Ray, the driver
    cancels its submitted tasks and releases their jobs: ``pruna_hub.sync.executors``.)"""

    def __init__(self) -> None:
        self.stopped = False

    def __call__(self) -> bool:
        return self.stopped

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopped and time.monotonic() < deadline:
            time.sleep(min(0.2, seconds))

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            log.warning("received signal %d: finishing the current job, then stopping", signum)
            self.stopped = True

        signal.signal(signal.SIGTERM, handler)


def _settings(options: dict[str, Any], config_file: Path | None, endpoint: str | None) -> Settings:
    flags = {k: v for k, v in options.items() if v is not None}
    if endpoint is not None:
        flags["hub_endpoint"] = endpoint
    return load_settings(flags, config_file=config_file)


def executor_options(command: F) -> F:
    """--executor, --ray-address and --parallelism, shared by `sync` and `worker`."""
    for option in reversed(
        [
            click.option(
                "--executor",
                type=click.Choice(["inprocess", "ray"]),
                default="inprocess",
                show_default=True,
                help="Where jobs run: this process, or Ray tasks.",
            ),
            click.option(
                "--ray-address",
                envvar="RAY_ADDRESS",
                help="Ray cluster to join (default: start a local Ray).",
            ),
            click.option(
                "--parallelism",
                type=click.IntRange(min=1),
                default=2,
                show_default=True,
                help="Jobs in flight at once with --executor ray.",
            ),
        ]
    ):
        command = option(command)
    return command


def _serve_metrics(ctx: click.Context, param: click.Parameter, port: int | None) -> None:
    if port is not None:
        from pruna_hub.metrics import start_metrics_server

        start_metrics_server(port)


metrics_option = click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    expose_value=False,
    callback=_serve_metrics,
    envvar="PRUNA_HUB_METRICS_PORT",
    help="Serve Prometheus metrics (step durations, Hub errors by kind, finished jobs, discovery passes) on "
    "127.0.0.1:PORT/metrics while running.",
)


@click.command("sync")
@click.option("--once/--watch", default=True, help="Run one pass (default), or keep watching the Hub.")
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds between passes with --watch.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be queued or skipped and why; change nothing.")
@click.option(
    "--schedule-only", is_flag=True, help="Discover and queue jobs, leave them to `pruna-hub worker`."
)
@click.option("--limit", type=click.IntRange(min=1), help="Models looked at per pass.")
@click.option("--author", "authors", multiple=True, help="Only models of this author/org (repeatable).")
@click.option("--search", help="Only models whose id contains this text.")
@recipe_dir_option
@click.option(
    "--target-org",
    help="Organization the smashed repos are published under (default PrunaAI; set one your token can "
    "write to).",
)
@device_option
@executor_options
@database_url_option
@local_hub_option
@config_option
@format_option()
@metrics_option
def sync(
    once: bool,
    interval: float,
    dry_run: bool,
    schedule_only: bool,
    limit: int | None,
    authors: tuple[str, ...],
    search: str | None,
    recipe_dirs: tuple[Path, ...],
    target_org: str | None,
    device: str | None,
    executor: str,
    ray_address: str | None,
    parallelism: int,
    database_url: str | None,
    local_hub: Path | None,
    config_file: Path | None,
    fmt: str,
) -> None:
    """Watch the Hub for new models and publish smashed copies of them."""
    from pruna_hub.sync.context import SyncContext
    from pruna_hub.sync.executors import make_executor
    from pruna_hub.sync.service import failures, open_dry_run, sync_once

    options = {"limit": limit, "authors": authors, "search": search, "recipe_dirs": recipe_dirs}
    options |= {"target_org": target_org, "device": device, "database_url": database_url}
    stop = StopFlag()
    stop.install()
    report = progress_reporter()
    with local_hub_endpoint(local_hub) as endpoint:
        settings = _settings(options, config_file, endpoint)
        ctx = open_dry_run(settings, report=report) if dry_run else SyncContext.open(settings, report=report)
        try:
            runner = make_executor(executor, ray_address=ray_address, parallelism=parallelism)
            if once or dry_run:
                summary = sync_once(
                    ctx, dry_run=dry_run, run=not schedule_only, executor=runner, should_stop=stop
                )
                _render(summary.to_dict() | {"published": _published_entries(ctx, summary)}, fmt)
            else:
                summary = _watch(
                    ctx, interval=interval, stop=stop, run=not schedule_only, runner=runner, fmt=fmt
                )
            failed = failures(summary.outcomes)
        finally:
            ctx.close()
    if failed is not None and not stop():  # stopped by SIGTERM: a clean stop, exit 0
        raise failed


def _watch(ctx: Any, *, interval: float, stop: StopFlag, run: bool, runner: Any, fmt: str) -> Any:
    """A pass every ``interval`` seconds until SIGTERM, each logged and rendered as it ends (with
    ``--format json``, one JSON object per line and pass); returns everything done, for the exit code."""
    from pruna_hub.sync.service import SyncSummary, sync_once

    total = SyncSummary()
    number = 0
    while not stop():
        number += 1
        log.info("pass %d: looking for new models", number)
        once = sync_once(ctx, run=run, executor=runner, should_stop=stop)
        data = once.to_dict() | {"published": _published_entries(ctx, once), "pass": number}
        _render(data, fmt, lines=True)
        log.info("pass %d done: %s; next pass in %g s", number, summary_line(once.counts()), interval)
        total.decisions += once.decisions
        total.outcomes += once.outcomes
        stop.wait(interval)
    return total


def _published_entries(ctx: Any, summary: Any) -> list[dict[str, Any]]:
    """The catalogue entry of every artifact this pass published or found already published, with the
    local path of its card (downloaded through the Hub client, like any user would)."""
    from registry_db.errors import NotFoundError
    from registry_db.queries import show_artifact

    targets = {o.target_repo_id: o.commit_sha for o in summary.outcomes if o.state == "published"}
    for decision in summary.decisions:
        if decision.action == "seen" and decision.recipe in ctx.book:
            repo = ctx.book.get(decision.recipe).repo_id(decision.repo_id, target_org=ctx.settings.target_org)
            targets.setdefault(repo, None)
    entries = []
    for repo_id, commit_sha in sorted(targets.items()):
        try:
            with ctx.catalogue.read_session() as session:
                entry = show_artifact(
                    session, repo_id, namespace=ctx.catalogue.namespace, commit_sha=commit_sha
                )
        except NotFoundError:
            continue
        entry["card_path"] = _card_path(ctx, repo_id, entry["artifact"]["commit_sha"])
        entries.append(entry)
    return entries


def _card_path(ctx: Any, repo_id: str, revision: str) -> str:
    """The card downloaded through the Hub client (the adapter's retries and error translation apply);
    if the Hub fails now, the run is still recorded and published, so say where the card lives instead."""
    from huggingface_hub import hf_hub_download

    from pruna_hub.errors import HubError

    try:
        return ctx.hub.call(
            "download",
            repo_id,
            lambda: hf_hub_download(
                repo_id,
                "README.md",
                revision=revision,
                endpoint=ctx.hub.api.endpoint,
                token=ctx.settings.token,
            ),
        )
    except HubError as e:
        return f"{ctx.hub.api.endpoint}/{repo_id}/blob/{revision}/README.md (not downloaded: {e})"


_MAIN_COUNTS = (("queued", "queued"), ("skipped", "skipped"), ("job_published", "published"))
_LABELS = {"seen": "already known", "job_queued": "to retry", "would_queue": "would queue"}


def summary_line(counts: dict[str, int]) -> str:
    """``3 queued, 2 skipped, 1 published, 0 failed`` (then any other count, e.g. ``1 already known``)."""
    rest = dict(counts)
    parts = [f"{rest.pop(key, 0)} {label}" for key, label in _MAIN_COUNTS]
    parts.append(f"{rest.pop('job_failed', 0)} failed")
    for key, n in sorted(rest.items()):
        parts.append(f"{n} {_LABELS.get(key, key.removeprefix('job_').replace('_', ' '))}")
    return ", ".join(parts)


def _rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for d in data["decisions"]:
        detail = d.get("reason") or d.get("detail") or ""
        if d.get("reason") and d.get("detail"):
            detail = f"{d['reason']}: {d['detail']}"
        rows.append((f"{d['repo_id']}@{d['revision'][:12]}", d["action"], d.get("recipe") or "-", detail))
    for j in data["jobs"]:
        detail = j.get("error") or f"{j.get('target_repo_id')}@{str(j.get('commit_sha', ''))[:12]}"
        subject = f"{j['base_repo_id']}@{j.get('revision', '')[:12]}" if j.get("base_repo_id") else "-"
        state = f"job {j['job_id']} {j['state']}"
        rows.append((subject, state, j.get("recipe") or "-", " ".join(detail.split())))
    return rows


def _render(data: dict[str, Any], fmt: str, *, lines: bool = False) -> None:
    """Table mode: one line per decision and job outcome, one per published card, then the summary.
    JSON: the whole pass (``lines``: on one line, for ``--watch``, which prints a pass at a time)."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=None if lines else 2, sort_keys=True, default=str))
        return
    rows = _rows(data)
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]
            click.echo("  ".join(cells).rstrip())
    for entry in data["published"]:
        click.echo(f"card of {entry['artifact']['repo_id']}: {entry['card_path']}")
    click.echo(summary_line(data["counts"]))


@click.command("worker")
@executor_options
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=10,
    show_default=True,
    help="Seconds between looks for new jobs.",
)
@click.option("--exit-when-empty", is_flag=True, help="Stop when no job is runnable instead of polling.")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Stop after this many jobs.")
@recipe_dir_option
@device_option
@database_url_option
@local_hub_option
@config_option
@format_option()
@metrics_option
def worker(
    executor: str,
    ray_address: str | None,
    parallelism: int,
    poll_interval: float,
    exit_when_empty: bool,
    max_jobs: int | None,
    recipe_dirs: tuple[Path, ...],
    device: str | None,
    database_url: str | None,
    local_hub: Path | None,
    config_file: Path | None,
    fmt: str,
) -> None:
    """Claim queued jobs from the catalogue and run them (start one per machine or GPU).

    SIGTERM lets the running job finish, then stops; a worker that dies instead leaves a lease that
    expires (PRUNA_HUB_LEASE_SECONDS), after which another worker takes the job over.
    """
    from pruna_hub.sync.context import SyncContext
    from pruna_hub.sync.executors import make_executor
    from pruna_hub.sync.service import SyncSummary, failures

    stop = StopFlag()
    stop.install()
    options = {"recipe_dirs": recipe_dirs, "device": device, "database_url": database_url}
    with local_hub_endpoint(local_hub) as endpoint:
        ctx = SyncContext.open(_settings(options, config_file, endpoint), report=progress_reporter())
        runner = make_executor(executor, ray_address=ray_address, parallelism=parallelism)
        summary = SyncSummary()
        try:
            while not stop():
                left = None if max_jobs is None else max_jobs - len(summary.outcomes)
                summary.outcomes += runner.drain(ctx, max_jobs=left, should_stop=stop)
                if exit_when_empty or (max_jobs is not None and len(summary.outcomes) >= max_jobs):
                    break
                stop.wait(poll_interval)
            failed = failures(summary.outcomes)
        finally:
            ctx.close()
    _render(summary.to_dict() | {"published": []}, fmt)
    if failed is not None and not stop():  # stopped by SIGTERM: a clean stop, exit 0
        raise failed
