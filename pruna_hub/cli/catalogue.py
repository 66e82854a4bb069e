"""`pruna-hub catalogue list|show|best|export`: query what was smashed, published and measured.

Thin: the queries live in ``registry_db.queries``; this module parses options and renders a table (the
default), JSON (``--format json``, for scripts) or CSV (export). Data goes to stdout, errors to stderr
through the CLI's single error handler.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO, Any

import click

from pruna_hub.cli.options import database_url_option, format_option, namespace_option

_JOB_STATES = ["discovered", "queued", "running", "smashed", "benchmarked", "published", "failed", "skipped"]


def metric_names() -> list[str]:
    """Every metric the sync records per benchmark run (the card's table of specs, plus the two
    millisecond summaries ``pruna_hub.sync.artifact.run_metrics`` adds for sorting)."""
    from pruna_hub.card import METRICS, QUALITY

    return [*METRICS, "decode_latency_ms", "ttft_ms", *QUALITY]


class MetricChoice(click.Choice[str]):
    """``click.Choice`` of ``metric_names()``, read when an option value is checked: the table lives with
    the card, which imports smash (and torch), and importing this module must stay light."""

    def __init__(self) -> None:
        self._names: tuple[str, ...] | None = None
        super().__init__([], case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(metric_names())
        return self._names

    @choices.setter
    def choices(self, value: object) -> None:  # click.Choice.__init__ assigns it; the table decides
        pass


_METRIC = MetricChoice()


@click.group("catalogue")
def catalogue() -> None:
    """Query the catalogue of smashed models."""


def _open(database_url: str | None, namespace: str) -> Any:
    from registry_db.session import Catalogue

    return Catalogue.open(database_url, namespace=namespace, read_only=True)


@catalogue.command("list")
@database_url_option
@namespace_option
@click.option("--arch", "architecture", help="Base architecture, e.g. LlamaForCausalLM.")
@click.option("--algorithm", help="Only recipes using this algorithm, e.g. hqq.")
@click.option("--state", type=click.Choice(_JOB_STATES), help="Job state.")
@click.option("--base", "base_repo", help="Base model repo id.")
@click.option(
    "--sort",
    "sort_metric",
    type=_METRIC,
    metavar="METRIC",
    help="Sort by this metric of the smashed model, best first (an unknown name lists them all).",
)
@click.option("--desc/--asc", "descending", default=None, help="Override the metric's best-first order.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@format_option()
def list_command(
    database_url: str | None,
    namespace: str,
    architecture: str | None,
    algorithm: str | None,
    state: str | None,
    base_repo: str | None,
    sort_metric: str | None,
    descending: bool | None,
    limit: int,
    fmt: str,
) -> None:
    """Jobs and their artifacts, newest first or sorted by a metric."""
    from registry_db.queries import Filters, list_entries

    filters = Filters(namespace, architecture, algorithm, state, base_repo)
    with _open(database_url, namespace) as cat, cat.read_session() as session:
        entries = list_entries(session, filters, sort_metric=sort_metric, descending=descending, limit=limit)
    if fmt == "json":
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    headers = ["JOB", "STATE", "BASE", "ARCH", "RECIPE", "ALGORITHMS", "ARTIFACT"]
    headers += [sort_metric.upper()] if sort_metric else []
    rows = [_list_row(e, bool(sort_metric)) for e in entries]
    click.echo(render_table([*headers, "NOTE"], rows) if rows else "no entries match")


def _list_row(entry: Any, with_metric: bool) -> list[str]:
    row = [
        str(entry.job_id),
        entry.state,
        f"{entry.base_repo_id}@{entry.base_revision[:7]}",
        entry.architecture or "-",
        entry.recipe,
        "+".join(entry.algorithms) or "-",
        entry.artifact_repo_id or "-",
    ]
    if with_metric:
        row.append(_number(entry.value, entry.unit))
    note = entry.skip_reason or (f"{entry.error_type}: {entry.error_message}" if entry.error_type else "")
    return [*row, _shorten(note, 60)]


@catalogue.command("show")
@click.argument("repo")
@click.option("--commit", "commit_sha", help="A commit (or its prefix) of the repo; default the newest.")
@database_url_option
@namespace_option
@format_option()
def show_command(
    repo: str, commit_sha: str | None, database_url: str | None, namespace: str, fmt: str
) -> None:
    """Everything about a published repo: base, recipe, config, metrics, lineage, files."""
    from registry_db.queries import show_artifact

    with _open(database_url, namespace) as cat, cat.read_session() as session:
        detail = show_artifact(session, repo, namespace=namespace, commit_sha=commit_sha)
    if fmt == "json":
        click.echo(json.dumps(detail, indent=2))
        return
    click.echo("\n".join(describe(detail)))


def describe(detail: dict[str, Any]) -> list[str]:
    """Human-readable lines for ``show``."""
    artifact, base, recipe, job = detail["artifact"], detail["base"], detail["recipe"], detail["job"]
    lines = [
        f"{artifact['repo_id']} @ {artifact['commit_sha']}"
        + (f" (tag {artifact['tag']})" if artifact["tag"] else ""),
        f"  verified   {_verified(artifact)}",
        f"  base       {base['repo_id']} @ {base['revision']}  {base['architecture'] or '-'}  "
        f"license {base['license'] or 'unknown'}  {_count(base['parameter_count'])} parameters",
        f"  recipe     {recipe['name']} {recipe['version'] or ''} ({recipe['content_hash'][:12]}): "
        + " -> ".join(recipe["algorithms"]),
        f"  config     {json.dumps(recipe['smash_config'], sort_keys=True)}",
    ]
    if job is not None:
        lines.append(
            f"  job        {job['id']} {job['state']}, attempt {job['attempts']}/{job['max_attempts']}"
        )
    lines += [
        f"  lineage    {e['relation']} from {e['parent']} @ {e['parent_revision']}" for e in detail["lineage"]
    ]
    lines.append(f"  files      {artifact['file_count']} files, {_bytes(artifact['total_bytes'])}")
    lines += [f"    {f['path']}  {_bytes(f['size'])}" for f in artifact["files"]]
    lines += _describe_metrics(detail["benchmark_runs"])
    lines += [f"  older      {h['commit_sha']} {h['tag'] or ''} {h['created_at']}" for h in detail["history"]]
    return lines


def _describe_metrics(runs: list[dict[str, Any]]) -> list[str]:
    current = {run["subject"]: run for run in runs if run["current"]}
    if not current:
        return ["  metrics    none recorded"]
    names = sorted({m["name"] for run in current.values() for m in run["metrics"]})
    values = {s: {m["name"]: (m["value"], m["unit"]) for m in run["metrics"]} for s, run in current.items()}
    rows = [
        [name, *(_number(*values.get(s, {}).get(name, (None, None))) for s in ("base", "smashed"))]
        for name in names
    ]
    table = render_table(["METRIC", "BASE", "SMASHED"], rows)
    lines = ["  metrics", *("    " + line for line in table.splitlines())]
    for subject, run in sorted(current.items()):
        versions = ", ".join(f"{k} {v}" for k, v in sorted(run["library_versions"].items()))
        lines.append(f"  {subject:<10} on {run['device_name'] or run['device'] or '-'}; {versions}")
    return lines


@catalogue.command("candidates")
@click.option(
    "--action", type=click.Choice(["queued", "skipped", "error"]), help="Only decisions of this kind."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@database_url_option
@namespace_option
@format_option()
def candidates_command(
    action: str | None, limit: int, database_url: str | None, namespace: str, fmt: str
) -> None:
    """What discovery decided for each model it saw, newest first: queued, or skipped with the reason
    (no recipe, gated, too large...), or an error reading it."""
    from registry_db.store import ServiceStore

    with _open(database_url, namespace) as cat:
        rows = ServiceStore(cat).candidates(action=action, limit=limit)
    if fmt == "json":
        click.echo(json.dumps([row.to_dict() for row in rows], indent=2))
        return
    table = [
        [
            f"{r.repo_id}@{r.revision[:12]}",
            r.action,
            r.reason or "",
            r.recipe_name or "",
            _shorten(r.detail or "", 70),
        ]
        for r in rows
    ]
    click.echo(render_table(["model", "decision", "reason", "recipe", "detail"], table))


@catalogue.command("best")
@click.option(
    "--metric",
    required=True,
    type=_METRIC,
    metavar="METRIC",
    help="e.g. decode_latency_ms, decode_tokens_per_s (an unknown name lists them all).",
)
@click.option("--arch", "architecture", help="Base architecture, e.g. LlamaForCausalLM.")
@click.option(
    "--higher-is-better/--lower-is-better", "higher", default=None, help="Override the metric's direction."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@database_url_option
@namespace_option
@format_option()
def best_command(
    metric: str,
    architecture: str | None,
    higher: bool | None,
    limit: int,
    database_url: str | None,
    namespace: str,
    fmt: str,
) -> None:
    """The best artifact of each base model by one metric, next to the base's own value."""
    from registry_db.queries import best_artifacts

    with _open(database_url, namespace) as cat, cat.read_session() as session:
        best = best_artifacts(
            session,
            metric=metric,
            architecture=architecture,
            namespace=namespace,
            higher_is_better=higher,
            limit=limit,
        )
    if fmt == "json":
        click.echo(json.dumps([b.to_dict() for b in best], indent=2))
        return
    headers = ["BASE", "ARCH", "BEST ARTIFACT", "RECIPE", metric.upper(), "BASE VALUE", "RATIO", "CANDIDATES"]
    rows = [
        [
            f"{b.base_repo_id}@{b.base_revision[:7]}",
            b.architecture or "-",
            b.artifact_repo_id,
            b.recipe,
            _number(b.value, b.unit),
            _number(b.base_value, b.unit),
            _ratio(b.value, b.base_value),
            str(b.candidates),
        ]
        for b in best
    ]
    click.echo(render_table(headers, rows) if rows else f"no artifact has a {metric!r} metric")


@catalogue.command("export")
@format_option("csv", default="json")
@click.option(
    "--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="File (default stdout)."
)
@click.option("--arch", "architecture", help="Base architecture.")
@click.option("--algorithm", help="Only recipes using this algorithm.")
@click.option("--state", type=click.Choice(_JOB_STATES), help="Job state.")
@click.option("--base", "base_repo", help="Base model repo id.")
@database_url_option
@namespace_option
def export_command(
    fmt: str,
    output: IO[str],
    architecture: str | None,
    algorithm: str | None,
    state: str | None,
    base_repo: str | None,
    database_url: str | None,
    namespace: str,
) -> None:
    """Every job with its artifact and all metrics of its base and smashed runs, as JSON (the default),
    CSV, or a table of the main columns to look at."""
    from registry_db.queries import Filters, export_table

    filters = Filters(namespace, architecture, algorithm, state, base_repo)
    with _open(database_url, namespace) as cat, cat.read_session() as session:
        table = export_table(session, filters)
        if fmt == "json":
            _write_json(output, table.rows)
        elif fmt == "csv":
            _write_csv(output, table)
        else:
            _write_table(output, table)


def _write_json(output: IO[str], rows: Any) -> None:
    output.write("[")
    for i, row in enumerate(rows):
        output.write(("," if i else "") + "\n  " + json.dumps(row))
    output.write("\n]\n")


_EXPORT_METRIC = "decode_latency_ms"
_EXPORT_COLUMNS = ("job_id", "state", "base_repo_id", "recipe", "algorithms", "artifact_repo_id")


def _write_table(output: IO[str], table: Any) -> None:
    def cells(row: dict[str, Any]) -> list[str]:
        values = [row.get(k) for k in _EXPORT_COLUMNS]
        text = ["+".join(v) if isinstance(v, list) else str(v if v is not None else "-") for v in values]
        return [*text, _number(row["smashed_metrics"].get(_EXPORT_METRIC), None)]

    rows = [cells(row) for row in table.rows]
    if not rows:
        click.echo("no entries match", err=True)
        return
    output.write(render_table([*(c.upper() for c in _EXPORT_COLUMNS), "DECODE_MS"], rows) + "\n")


def _write_csv(output: IO[str], table: Any) -> None:
    writer: Any = None
    for row in table.rows:
        flat = {k: v for k, v in row.items() if k not in ("smashed_metrics", "base_metrics")}
        flat["algorithms"] = "+".join(flat["algorithms"])
        flat |= {f"smashed.{n}": row["smashed_metrics"].get(n) for n in table.smashed_metrics}
        flat |= {f"base.{n}": row["base_metrics"].get(n) for n in table.base_metrics}
        if writer is None:
            writer = csv.DictWriter(output, fieldnames=list(flat), lineterminator="\n")
            writer.writeheader()
        writer.writerow(flat)
    if writer is None:
        click.echo("no entries match", err=True)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in [headers, *rows])
    return "\n".join(line.rstrip() for line in lines)


def _number(value: float | None, unit: str | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return f"{text} {unit}" if unit else text


def _ratio(value: float, base: float | None) -> str:
    return "-" if not base else f"{value / base:.2f}x"


def _bytes(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value / 1e6:.1f}M"


def _verified(artifact: dict[str, Any]) -> str:
    state = {True: "yes", False: "NO", None: "not yet"}[artifact["verified"]]
    return f"{state} ({artifact['verification_message']})" if artifact["verification_message"] else state


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
