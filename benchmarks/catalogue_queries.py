"""How fast the catalogue answers the CLI's questions with 100k artifacts, on SQLite and PostgreSQL.

Fills a fresh database per backend (a SQLite file; a throwaway database on the PostgreSQL test server) with
``--artifacts`` published artifacts (one per job; 5 recipes per base model, 20 architectures), each with a
smashed benchmark run of 6 metrics, one base run of 6 metrics per base model, lineage edges, and 10% more
jobs that are queued, failed or skipped. Then times the library calls the CLI makes (``registry_db.queries``,
a fresh read session each) and the whole `pruna-hub catalogue list` command in-process (CliRunner, which
includes opening the catalogue and checking its schema). Prints a table and writes JSON to
``benchmarks/results/catalogue_queries.json``. Target: p95 <= 50 ms for list/show/best.

    .venv/bin/python benchmarks/catalogue_queries.py                 # both backends, 100k artifacts
    .venv/bin/python benchmarks/catalogue_queries.py --artifacts 20000 --backends sqlite
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import text

from pruna_hub.cli import cli
from registry_db.models import (
    Artifact,
    BaseModel,
    BenchmarkRun,
    Job,
    Lineage,
    Metric,
    Recipe,
    RecipeAlgorithm,
)
from registry_db.queries import Filters, best_artifacts, export_table, list_entries, show_artifact
from registry_db.session import Catalogue

RESULTS = Path(__file__).resolve().parent / "results" / "catalogue_queries.json"
ARCHITECTURES = [f"Arch{i:02d}ForCausalLM" for i in range(20)]
RECIPES = [
    ("hqq-4bit", ["hqq", "torch_compile"]),
    ("hqq-8bit", ["hqq"]),
    ("int8", ["int8_weight"]),
    ("half", ["half", "torch_compile"]),
    ("pruned", ["magnitude_pruning", "int8_weight"]),
]
METRICS = [
    ("decode_latency_ms", "ms"),
    ("ttft_ms", "ms"),
    ("decode_tokens_per_s", "tokens/s"),
    ("peak_memory_bytes", "B"),
    ("kl_mean", None),
    ("top1_agreement", None),
]
NAMESPACE = "bench"
RANKING_BACKFILL = (
    "INSERT INTO artifact_metrics (artifact_id, name, namespace, architecture, base_model_id, value, unit) "
    "SELECT a.id, m.name, a.namespace, b.architecture, a.base_model_id, m.value, m.unit FROM artifacts a "
    "JOIN base_models b ON b.id = a.base_model_id JOIN metrics m ON m.run_id = a.smashed_run_id"
)
CHUNK = 10_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- filling --------------------------------------------------------------------------------------------


def fill(catalogue: Catalogue, artifacts: int, seed: int = 0) -> dict[str, Any]:
    """Bulk-insert the synthetic catalogue; returns what the timed queries pick their arguments from."""
    rng = random.Random(seed)
    n_bases = artifacts // len(RECIPES)
    with catalogue.session() as session:
        _insert(
            session,
            Recipe,
            [
                {
                    "id": i + 1,
                    "namespace": NAMESPACE,
                    "name": name,
                    "version": "1",
                    "content_hash": f"{i:064x}",
                    "smash_config": {"format_version": 1, "algorithms": {a: {} for a in algorithms}},
                    "created_at": T0,
                }
                for i, (name, algorithms) in enumerate(RECIPES)
            ],
        )
        _insert(
            session,
            RecipeAlgorithm,
            [
                {"recipe_id": i + 1, "position": p, "algorithm": a}
                for i, (_, algorithms) in enumerate(RECIPES)
                for p, a in enumerate(algorithms)
            ],
        )
        _insert(session, BaseModel, (_base(b) for b in range(1, n_bases + 1)))
        _insert(session, BenchmarkRun, (_run(b, None, "base", b) for b in range(1, n_bases + 1)))
        _insert(session, Metric, (m for b in range(1, n_bases + 1) for m in _metrics(b, rng, 1.0)))
        ids = range(1, n_bases * len(RECIPES) + 1)
        _insert(session, Job, (_job(j, n_bases, "published") for j in ids))
        _insert(session, BenchmarkRun, (_run(n_bases + j, j, "smashed", _base_of(j, n_bases)) for j in ids))
        _insert(session, Metric, (m for j in ids for m in _metrics(n_bases + j, rng, rng.uniform(0.15, 0.9))))
        _insert(session, Artifact, (_artifact(j, n_bases) for j in ids))
        # What record_benchmark_run/record_artifact maintain row by row, done here in one statement.
        session.execute(text(RANKING_BACKFILL))
        _insert(
            session,
            Lineage,
            (
                {
                    "id": j,
                    "parent_base_model_id": _base_of(j, n_bases),
                    "child_artifact_id": j,
                    "relation": "quantized",
                    "created_at": T0,
                }
                for j in ids
            ),
        )
        # Jobs without artifacts: queued, failed, skipped (a second revision of some bases).
        extra_bases = range(n_bases + 1, n_bases + 1 + artifacts // 10)
        _insert(session, BaseModel, (_base(b) for b in extra_bases))
        extra_jobs = range(len(ids) + 1, len(ids) + 1 + len(extra_bases))
        _insert(
            session,
            Job,
            (
                _job(j, n_bases, rng.choice(["queued", "failed", "skipped"]), base=b)
                for j, b in zip(extra_jobs, extra_bases, strict=True)
            ),
        )
    _analyze(catalogue)
    return {"bases": n_bases, "jobs": len(ids) + len(extra_jobs)}


def _insert(session: Any, model: Any, rows: Any) -> None:
    """Bulk load: COPY on PostgreSQL, Core executemany in chunks on SQLite (the ORM's bulk path is ~10x
    slower and this is setup, not what is measured)."""
    table = model.__table__
    if session.get_bind().dialect.name == "postgresql":
        _copy(session, table, rows)
        return
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            session.execute(table.insert(), batch)
            batch = []
    if batch:
        session.execute(table.insert(), batch)


def _copy(session: Any, table: Any, rows: Any) -> None:
    connection = session.connection().connection.driver_connection
    columns: list[str] | None = None
    copy_context = None
    with connection.cursor() as cursor:
        for row in rows:
            if columns is None:
                columns = list(row)
                copy_context = cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN")
                copy = copy_context.__enter__()
            copy.write_row(
                [json.dumps(row[c]) if isinstance(row[c], dict | list) else row[c] for c in columns]
            )
        if copy_context is not None:
            copy_context.__exit__(None, None, None)


def _base_of(job: int, n_bases: int) -> int:
    return (job - 1) // len(RECIPES) + 1


def _base(b: int) -> dict[str, Any]:
    arch = ARCHITECTURES[b % len(ARCHITECTURES)]
    return {
        "id": b,
        "namespace": NAMESPACE,
        "repo_id": f"org{b % 500}/model-{b}",
        "revision": f"{b:040x}",
        "architecture": arch,
        "architectures": [arch],
        "model_type": "llama",
        "license": "apache-2.0",
        "gated": False,
        "parameter_count": 100_000_000 + b,
        "size_bytes": 400_000_000 + b,
        "first_seen_at": T0,
        "last_checked_at": T0,
    }


def _job(j: int, n_bases: int, state: str, base: int | None = None) -> dict[str, Any]:
    b = base if base is not None else _base_of(j, n_bases)
    recipe = (j - 1) % len(RECIPES) + 1
    t = T0 + timedelta(seconds=j)
    return {
        "id": j,
        "namespace": NAMESPACE,
        "idempotency_key": f"org/model-{b}@{b:040x}#{recipe:064x}",
        "base_model_id": b,
        "recipe_id": recipe,
        "state": state,
        "attempts": 1,
        "max_attempts": 3,
        "next_attempt_at": t,
        "created_at": t,
        "updated_at": t,
        "skip_reason": "no recipe for this architecture" if state == "skipped" else None,
        "last_error_type": "QualityGateError" if state == "failed" else None,
        "last_error_message": "top1_agreement 0.5 < 0.9" if state == "failed" else None,
    }


def _run(run_id: int, job: int | None, subject: str, base: int) -> dict[str, Any]:
    return {
        "id": run_id,
        "namespace": NAMESPACE,
        "subject": subject,
        "base_model_id": base,
        "job_id": job,
        "artifact_id": None,
        "device": "cuda",
        "device_name": "NVIDIA H100",
        "torch_version": "2.13.0",
        "settings": {"warmup": 3, "repetitions": 10},
        "hardware": {"device": "cuda"},
        "library_versions": {"torch": "2.13.0"},
        "report": {},
        "created_at": T0,
    }


def _metrics(run_id: int, rng: random.Random, factor: float) -> Iterator[dict[str, Any]]:
    base_values = {
        "decode_latency_ms": 57.0,
        "ttft_ms": 22.0,
        "decode_tokens_per_s": 17.5,
        "peak_memory_bytes": 1.1e9,
        "kl_mean": 0.0,
        "top1_agreement": 1.0,
    }
    for i, (name, unit) in enumerate(METRICS):
        value = base_values[name] * factor * rng.uniform(0.9, 1.1)
        if name in ("kl_mean", "top1_agreement"):
            value = rng.uniform(0, 0.5) if name == "kl_mean" else rng.uniform(0.6, 1.0)
        yield {"id": run_id * len(METRICS) + i, "run_id": run_id, "name": name, "value": value, "unit": unit}


def _artifact(j: int, n_bases: int) -> dict[str, Any]:
    files = [{"path": "model.safetensors", "size": 300_000_000}, {"path": "smash_config.json", "size": 200}]
    return {
        "id": j,
        "namespace": NAMESPACE,
        "job_id": j,
        "base_model_id": _base_of(j, n_bases),
        "recipe_id": (j - 1) % len(RECIPES) + 1,
        "repo_id": _artifact_repo(j, n_bases),
        "commit_sha": f"{j:040x}",
        "tag": "v1",
        "files": files,
        "file_count": 2,
        "total_bytes": 300_000_200,
        "verified": True,
        "created_at": T0,
        "smashed_run_id": n_bases + j,
        "base_run_id": _base_of(j, n_bases),
    }


def _artifact_repo(j: int, n_bases: int) -> str:
    return f"smashed/model-{_base_of(j, n_bases)}-r{j}"


def _analyze(catalogue: Catalogue) -> None:
    """Planner statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) would gather them."""
    with catalogue.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()


# --- timing ---------------------------------------------------------------------------------------------


def queries(
    catalogue: Catalogue, data: dict[str, Any], url: str
) -> dict[str, Callable[[random.Random], Any]]:
    n_bases = data["bases"]

    def read(fn: Callable[[Any], Any]) -> Any:
        with catalogue.read_session() as session:
            return fn(session)

    def cli_list(rng: random.Random) -> None:
        arch = rng.choice(ARCHITECTURES)
        args = [
            "catalogue",
            "list",
            "--database-url",
            url,
            "--namespace",
            NAMESPACE,
            "--arch",
            arch,
            "--sort",
            "decode_latency_ms",
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output

    return {
        "list (newest 50)": lambda rng: read(lambda s: list_entries(s, Filters(NAMESPACE))),
        "list --sort decode_latency_ms": lambda rng: read(
            lambda s: list_entries(s, Filters(NAMESPACE), sort_metric="decode_latency_ms")
        ),
        "list --arch X --sort decode_latency_ms": lambda rng: read(
            lambda s: list_entries(
                s, Filters(NAMESPACE, architecture=rng.choice(ARCHITECTURES)), sort_metric="decode_latency_ms"
            )
        ),
        "list --sort top1_agreement (desc)": lambda rng: read(
            lambda s: list_entries(s, Filters(NAMESPACE), sort_metric="top1_agreement")
        ),
        "list --algorithm hqq --state published": lambda rng: read(
            lambda s: list_entries(s, Filters(NAMESPACE, algorithm="hqq", state="published"))
        ),
        "list --state failed": lambda rng: read(
            lambda s: list_entries(s, Filters(NAMESPACE, state="failed"))
        ),
        "list --base REPO": lambda rng: read(
            lambda s: list_entries(
                s, Filters(NAMESPACE, base_repo=f"org{(b := rng.randint(1, n_bases)) % 500}/model-{b}")
            )
        ),
        "show REPO": lambda rng: read(
            lambda s: show_artifact(
                s, _artifact_repo(rng.randint(1, n_bases * len(RECIPES)), n_bases), namespace=NAMESPACE
            )
        ),
        "best --arch X --metric decode_latency_ms": lambda rng: read(
            lambda s: best_artifacts(
                s, metric="decode_latency_ms", architecture=rng.choice(ARCHITECTURES), namespace=NAMESPACE
            )
        ),
        "best --metric decode_latency_ms (all archs)": lambda rng: read(
            lambda s: best_artifacts(s, metric="decode_latency_ms", namespace=NAMESPACE)
        ),
        "cli: catalogue list --arch X --sort ... (in-process)": cli_list,
    }


def time_queries(
    named: dict[str, Callable[[random.Random], Any]], repeats: int
) -> dict[str, dict[str, float]]:
    rng = random.Random(1)
    results = {}
    for name, query in named.items():
        query(rng)  # warm: connection pool, statement caches
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            query(rng)
            samples.append((time.perf_counter() - start) * 1000)
        samples.sort()
        results[name] = {
            "p50_ms": statistics.median(samples),
            "p95_ms": samples[int(0.95 * (len(samples) - 1))],
            "max_ms": samples[-1],
            "repeats": repeats,
        }
    return results


def time_export(catalogue: Catalogue) -> dict[str, float]:
    start = time.perf_counter()
    with catalogue.read_session() as session:
        rows = sum(1 for _ in export_table(session, Filters(NAMESPACE)).rows)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'catalogue.db'}"
        return
    from registry_db.testing import postgres_unreachable_reason, throwaway_postgres_database

    reason = postgres_unreachable_reason()
    if reason is not None:
        raise SystemExit(f"cannot benchmark PostgreSQL: {reason}")
    with throwaway_postgres_database("pruna_hub_bench") as url:
        yield url.render_as_string(hide_password=False)


def run_backend(backend: str, artifacts: int, repeats: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(backend, Path(tmp)) as url,
        Catalogue.open(url, namespace=NAMESPACE) as catalogue,
    ):
        start = time.perf_counter()
        data = fill(catalogue, artifacts)
        fill_s = time.perf_counter() - start
        print(
            f"{backend}: filled {artifacts} artifacts ({data['jobs']} jobs) in {fill_s:.1f} s",
            file=sys.stderr,
        )
        timings = time_queries(queries(catalogue, data, url), repeats)
        export = time_export(catalogue)
    return {"fill_seconds": fill_s, "queries": timings, "export": export, **data}


def render(results: dict[str, Any], target_ms: float) -> str:
    backends = list(results["backends"])
    names = list(next(iter(results["backends"].values()))["queries"])
    header = ["query", *(f"{b} p50 / p95 ms" for b in backends)]
    rows = [
        [name, *(_cell(results["backends"][b]["queries"][name], target_ms) for b in backends)]
        for name in names
    ]
    exports = [results["backends"][b]["export"] for b in backends]
    rows.append(
        ["export (all jobs, streamed)", *(f"{e['rows']} rows in {e['seconds']:.1f} s" for e in exports)]
    )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    )


def _cell(timing: dict[str, float], target_ms: float) -> str:
    flag = "" if timing["p95_ms"] <= target_ms else "  (over target)"
    return f"{timing['p50_ms']:.1f} / {timing['p95_ms']:.1f}{flag}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--target-ms", type=float, default=50.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "artifacts": args.artifacts,
        "target_p95_ms": args.target_ms,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "measured_at": datetime.now(UTC).isoformat(),
        "backends": {},
    }
    for backend in args.backends.split(","):
        results["backends"][backend] = run_backend(backend.strip(), args.artifacts, args.repeats)
    print(render(results, args.target_ms))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
