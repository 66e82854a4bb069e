"""`pruna-hub jobs list|show|retry|requeue|cancel`: look at smash jobs and change them by hand.

Thin: the rules (which state each action applies to, the audit log) live in ``registry_db.control``.
``list`` and ``show`` only read: they never create a catalogue. Every change records who (``--by``, default
USER@HOST), when and why (``--reason``, required) in the catalogue; ``jobs show`` prints that log.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pruna_hub.cli.catalogue import render_table
from pruna_hub.cli.options import database_url_option, format_option, namespace_option

F = TypeVar("F", bound=Callable[..., Any])
JOB_STATES = ["discovered", "queued", "running", "smashed", "benchmarked", "published", "failed", "skipped"]


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _selection(command: F) -> F:
    """JOB_ID... and --base/--state: which jobs a command means."""
    for option in reversed(
        [
            click.argument("job_ids", nargs=-1, type=click.IntRange(min=1)),
            click.option("--base", "base_repo", help="Every job of this base model repo id."),
            click.option("--state", type=click.Choice(JOB_STATES), help="Every job in this state."),
        ]
    ):
        command = option(command)
    return command


def _change(command: F) -> F:
    """--reason and --by, recorded with every change."""
    for option in reversed(
        [
            click.option("--reason", required=True, help="Why: recorded in the catalogue with the change."),
            click.option("--by", "actor", default=default_actor, show_default="USER@HOST", help="Who."),
        ]
    ):
        command = option(command)
    return command


@click.group("jobs")
def jobs() -> None:
    """List, show, retry, requeue and cancel smash jobs."""


def _open(database_url: str | None, namespace: str, *, read_only: bool) -> Any:
    from registry_db.session import Catalogue

    return Catalogue.open(database_url, namespace=namespace, read_only=read_only)


def _selector(namespace: str, job_ids: tuple[int, ...], base_repo: str | None, state: str | None) -> Any:
    from registry_db.control import JobSelector

    return JobSelector(namespace, ids=job_ids, base_repo=base_repo, state=state)


@jobs.command("list")
@_selection
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@database_url_option
@namespace_option
@format_option()
def list_command(
    job_ids: tuple[int, ...],
    base_repo: str | None,
    state: str | None,
    limit: int,
    database_url: str | None,
    namespace: str,
    fmt: str,
) -> None:
    """Jobs newest first: state, attempts, and why a job failed or was skipped."""
    from registry_db.control import list_jobs

    with _open(database_url, namespace, read_only=True) as cat, cat.read_session() as session:
        records = list_jobs(session, _selector(namespace, job_ids, base_repo, state), limit=limit)
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    headers = ["JOB", "STATE", "BASE", "RECIPE", "ATTEMPTS", "NOTE"]
    rows = [
        [
            str(r.id),
            r.state,
            f"{r.base_repo_id}@{r.revision[:7]}",
            r.recipe,
            f"{r.attempts}/{r.max_attempts}",
            _shorten(_note(r), 70),
        ]
        for r in records
    ]
    click.echo(render_table(headers, rows) if rows else "no jobs match")


@jobs.command("show")
@click.argument("job_id", type=click.IntRange(min=1))
@database_url_option
@namespace_option
@format_option()
def show_command(job_id: int, database_url: str | None, namespace: str, fmt: str) -> None:
    """One job: its base, recipe, attempts, lease, last error, and every change made by hand."""
    from registry_db.control import show_job

    with _open(database_url, namespace, read_only=True) as cat, cat.read_session() as session:
        record = show_job(session, job_id, namespace=namespace)
    if fmt == "json":
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    click.echo("\n".join(describe(record)))


def describe(r: Any) -> list[str]:
    lines = [
        f"job {r.id}: {r.state}",
        f"  base       {r.base_repo_id} @ {r.revision}",
        f"  recipe     {r.recipe} ({r.recipe_hash[:12]})",
        f"  attempts   {r.attempts}/{r.max_attempts}, next not before {r.next_attempt_at.isoformat()}",
        f"  created    {r.created_at.isoformat()}, updated {r.updated_at.isoformat()}",
    ]
    if r.lease_owner:
        lines.append(f"  lease      {r.lease_owner} until {r.lease_expires_at.isoformat()}")
    if r.finished_at:
        lines.append(f"  finished   {r.finished_at.isoformat()}")
    if r.last_error_type:
        lines.append(f"  last error {r.last_error_type}: {r.last_error_message}")
    if r.skip_reason:
        lines.append(f"  skipped    {r.skip_reason}")
    lines.append("  changes    " + ("none by hand" if not r.events else ""))
    for e in r.events:
        budget = f" (budget {e.max_attempts})" if e.max_attempts else ""
        lines.append(
            f"    {e.created_at.isoformat()}  {e.action} {e.from_state} -> {e.to_state}{budget} "
            f"by {e.actor}: {e.reason}"
        )
    return lines


def _control(
    action: str,
    *,
    job_ids: tuple[int, ...],
    base_repo: str | None,
    state: str | None,
    reason: str,
    actor: str,
    attempts: int,
    database_url: str | None,
    namespace: str,
    fmt: str,
) -> None:
    from registry_db.control import control_jobs

    selector = _selector(namespace, job_ids, base_repo, state)
    if not (job_ids or base_repo or state):
        raise click.UsageError("name the jobs: JOB_ID..., --base REPO_ID or --state STATE")
    with _open(database_url, namespace, read_only=True) as cat, cat.session() as session:
        events = control_jobs(session, action, selector, actor=actor, reason=reason, attempts=attempts)
    if fmt == "json":
        click.echo(json.dumps([e.to_dict() for e in events], indent=2))
        return
    for e in events:
        budget = f", attempt budget {e.max_attempts}" if e.max_attempts else ""
        click.echo(f"job {e.job_id}: {e.from_state} -> {e.to_state}{budget}")


def _attempts_option(command: F) -> F:
    return click.option(
        "--attempts",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        help="New attempt budget: this many more tries from now.",
    )(command)


@jobs.command("retry")
@_selection
@_change
@_attempts_option
@database_url_option
@namespace_option
@format_option()
def retry_command(job_ids: tuple[int, ...], **options: Any) -> None:
    """Queue failed jobs again with a new attempt budget."""
    _control("retry", job_ids=job_ids, **options)


@jobs.command("requeue")
@_selection
@_change
@_attempts_option
@database_url_option
@namespace_option
@format_option()
def requeue_command(job_ids: tuple[int, ...], **options: Any) -> None:
    """Queue skipped (or cancelled) jobs after all, overruling the reason they were skipped."""
    _control("requeue", job_ids=job_ids, **options)


@jobs.command("cancel")
@_selection
@_change
@database_url_option
@namespace_option
@format_option()
def cancel_command(job_ids: tuple[int, ...], **options: Any) -> None:
    """Skip unfinished jobs; a running job's worker loses its lease and stops at its next step."""
    _control("cancel", job_ids=job_ids, attempts=1, **options)


def _note(r: Any) -> str:
    if r.skip_reason:
        return r.skip_reason
    return f"{r.last_error_type}: {r.last_error_message}" if r.last_error_type else ""


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
