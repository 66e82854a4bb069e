"""Jobs per minute of `pruna-hub worker` processes with a fast stand-in for smash/evaluate.

What is measured is the service's own overhead per job: claim (lease), download the base from the store,
load it, a real 8-bit hqq smash of a tiny Llama, save, record the benchmark runs, build the card and
plot, publish one commit + tag, load the artifact back from the store and run it, complete the job.
Only the evaluation is canned (tests/pruna_hub/worker_support.py), so the numbers say how much the
service itself costs per job, not how long a real model takes to smash.

The local Hub store is served on a loopback port shared by all workers; each worker is a real
subprocess (`pruna-hub worker --exit-when-empty` with the stand-in installed).

    .venv/bin/python benchmarks/worker_throughput.py --jobs 100 --workers 1 2 4 --backend sqlite postgresql

Prints a table and writes benchmarks/results/worker_throughput.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pruna_hub"))  # the stand-in lives with the tests that use it

from huggingface_hub import HfApi  # noqa: E402
from sync_support import write_recipe  # noqa: E402
from worker_support import ENV_REPORT, canned_report, publish_bases, queue_jobs, worker_command  # noqa: E402

from pruna_hub.hubstore import LocalHub  # noqa: E402
from pruna_hub.recipes import load_recipes  # noqa: E402
from registry_db import Catalogue  # noqa: E402
from registry_db.models import Job  # noqa: E402
from registry_db.testing import postgres_unreachable_reason, throwaway_postgres_database  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "worker_throughput.json"


def run_workers(env: dict[str, str], workers: int, timeout_s: float) -> tuple[float, list[int]]:
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            worker_command("worker", "--exit-when-empty", "--format", "json"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    codes = [p.wait(timeout=timeout_s) for p in processes]
    return time.perf_counter() - started, codes


def job_window(url: str, namespace: str) -> dict[str, Any]:
    """From the catalogue: states, and the time from the first claim to the last finished job."""
    with Catalogue.open(url, namespace=namespace) as catalogue, catalogue.read_session() as session:
        jobs = session.query(Job).filter(Job.namespace == namespace).all()
        states = {j.state for j in jobs}
        first = min(j.started_at for j in jobs if j.started_at)
        last = max(j.finished_at for j in jobs if j.finished_at)
        attempts = sum(j.attempts for j in jobs)
    return {"states": sorted(states), "window_s": (last - first).total_seconds(), "attempts": attempts}


def measure(
    backend: str, url: str, workers: int, jobs: int, hub: LocalHub, endpoint: str, work: Path, report: Path
) -> dict[str, Any]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    org = f"bench{uuid.uuid4().hex[:6]}"
    recipes = write_recipe(work / "recipes")
    recipe = load_recipes([recipes]).get("tiny-llama")
    revisions = publish_bases(
        HfApi(endpoint=endpoint), [f"{org}-base/m{i:04d}" for i in range(jobs)], work / f"base-{org}"
    )
    with Catalogue.open(url, namespace=namespace) as catalogue:
        queue_jobs(catalogue, recipe, revisions)
    env = os.environ | {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(work / f"hf-{org}"),
        "PRUNA_HUB_DATABASE_URL": url,
        "PRUNA_HUB_NAMESPACE": namespace,
        "PRUNA_HUB_TARGET_ORG": org,
        "PRUNA_HUB_RECIPE_DIRS": str(recipes),
        "PRUNA_HUB_WORK_DIR": str(work / f"work-{org}"),
        "PRUNA_HUB_DEVICE": "cpu",
        ENV_REPORT: str(report),
    }
    wall, codes = run_workers(env, workers, timeout_s=3600)
    window = job_window(url, namespace)
    return {
        "backend": backend,
        "workers": workers,
        "jobs": jobs,
        "exit_codes": codes,
        "wall_s": wall,
        **window,
        "jobs_per_minute": jobs / window["window_s"] * 60,
        "wall_seconds_per_job": window["window_s"] / jobs,
        "seconds_per_job_per_worker": window["window_s"] * workers / jobs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="worker-throughput-") as tmp:
        work = Path(tmp)
        hub = LocalHub(work / "hub")
        recipe = load_recipes([write_recipe(work / "recipes")]).get("tiny-llama")
        report = work / "report.json"
        report.write_text(canned_report(recipe, work / "canned"))
        with hub.serve() as endpoint:
            for backend in args.backend:
                if backend == "postgresql" and (reason := postgres_unreachable_reason()):
                    print(f"skipping postgresql: {reason}", file=sys.stderr)
                    continue
                for workers in args.workers:
                    if backend == "sqlite":
                        url = f"sqlite:///{work / f'catalogue-{workers}.db'}"
                        rows.append(measure(backend, url, workers, args.jobs, hub, endpoint, work, report))
                    else:
                        with throwaway_postgres_database("pruna_hub_bench") as pg:
                            url = pg.render_as_string(hide_password=False)
                            rows.append(
                                measure(backend, url, workers, args.jobs, hub, endpoint, work, report)
                            )
                    print_row(rows[-1])
    write(rows)


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['backend']:<10} workers={row['workers']:<2} jobs={row['jobs']:<4} "
        f"window={row['window_s']:7.1f}s  {row['jobs_per_minute']:7.1f} jobs/min  "
        f"{row['wall_seconds_per_job']:5.2f} s/job  "
        f"{row['seconds_per_job_per_worker']:5.2f} s/job/worker  states={','.join(row['states'])} "
        f"exit={row['exit_codes']}",
        flush=True,
    )


def write(rows: list[dict[str, Any]]) -> None:
    import torch

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg": os.getloadavg(),
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
