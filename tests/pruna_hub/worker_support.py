"""Support for the worker tests and benchmarks/worker_throughput.py: a fast stand-in at the job boundary.

Only ``SyncContext.steps`` (load the base, smash, evaluate) is replaced; claiming, leasing, recording,
publishing and verifying stay real. The stand-in loads the real base and smashes it for real with the
recipe (8-bit hqq on a tiny Llama: a few hundred ms), but returns a canned ``EvaluationReport`` measured
once by a real ``evaluate()`` instead of benchmarking every job.

Run as a script it is ``pruna-hub`` with the stand-in installed, so worker subprocesses are real CLI
workers::

    python tests/pruna_hub/worker_support.py worker --exit-when-empty

Behaviour is chosen by environment variables, so it also reaches Ray workers (``install`` is Ray's
``worker_process_setup_hook`` there):

- ``PRUNA_HUB_TEST_REPORT``: path of the canned report (JSON from ``EvaluationReport.to_json``); without
  it the evaluation is real;
- ``PRUNA_HUB_TEST_HOLD_SECONDS``: evaluate sleeps this long (to kill or stop a worker mid-job);
- ``PRUNA_HUB_TEST_CRASH_DIR``: the process dies (``os._exit``) in ``smash`` the first time it sees a base
  revision (a marker file in this directory remembers it), or every time for bases whose repo id contains
  ``always-crash``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from pruna_hub.recipes import Recipe
from pruna_hub.sync.steps import ModelSteps, evaluation_settings

ENV_REPORT = "PRUNA_HUB_TEST_REPORT"
ENV_HOLD = "PRUNA_HUB_TEST_HOLD_SECONDS"
ENV_CRASH_DIR = "PRUNA_HUB_TEST_CRASH_DIR"
ALWAYS_CRASH = "always-crash"


class StandInSteps(ModelSteps):
    """Real load and smash; a canned evaluation when given one (see the module docstring)."""

    def __init__(
        self, report_json: str | None = None, *, hold_s: float = 0.0, crash_dir: Path | None = None
    ) -> None:
        from smash.evaluation.report import EvaluationReport

        self.report = None if report_json is None else EvaluationReport.from_json(report_json)
        self.hold_s = hold_s
        self.crash_dir = crash_dir

    def smash(self, base: Any, recipe: Recipe, *, tokenizer: Any, device: str) -> Any:
        if self.crash_dir is not None:
            self._maybe_crash(base)
        return super().smash(base, recipe, tokenizer=tokenizer, device=device)

    def _maybe_crash(self, base: Any) -> None:
        path = str(getattr(base.config, "_name_or_path", ""))
        marker = self.crash_dir / (path.replace("/", "_") or "model")  # type: ignore[operator]
        if ALWAYS_CRASH in path or not marker.exists():
            marker.touch()
            os._exit(17)  # a hard crash: no exception, no cleanup, nothing recorded by the job itself

    def evaluate(
        self, base: Any, smashed: Any, recipe: Recipe, tokenizer: Any, *, base_path: Path, smashed_path: Path
    ) -> Any:
        if self.hold_s:
            time.sleep(self.hold_s)
        if self.report is None:
            return super().evaluate(
                base, smashed, recipe, tokenizer, base_path=base_path, smashed_path=smashed_path
            )
        return self.report


def steps_from_environment() -> ModelSteps | None:
    report, crash_dir = os.environ.get(ENV_REPORT), os.environ.get(ENV_CRASH_DIR)
    if report is None and crash_dir is None:
        return None
    return StandInSteps(
        None if report is None else Path(report).read_text(),
        hold_s=float(os.environ.get(ENV_HOLD, "0")),
        crash_dir=Path(crash_dir) if crash_dir else None,
    )


def install() -> None:
    """Make every ``SyncContext.open`` in this process use the stand-in (when the environment asks)."""
    from pruna_hub.sync.context import SyncContext

    if getattr(SyncContext.open, "_fast_steps", False):
        return
    original = SyncContext.open.__func__  # type: ignore[attr-defined]

    def open_with_fast_steps(cls: type[SyncContext], *args: Any, **kwargs: Any) -> SyncContext:
        ctx = original(cls, *args, **kwargs)
        steps = steps_from_environment()
        if steps is not None:
            ctx.steps = steps
        return ctx

    open_with_fast_steps._fast_steps = True  # type: ignore[attr-defined]
    SyncContext.open = classmethod(open_with_fast_steps)  # type: ignore[method-assign,assignment]


def canned_report(recipe: Recipe, work: Path) -> str:
    """One real ``evaluate()`` of a tiny Llama against its smashed copy, with the recipe's settings."""
    from sync_support import tiny_llama, tiny_tokenizer

    from smash import smash
    from smash.evaluation import evaluate

    base, tokenizer = tiny_llama(), tiny_tokenizer()
    smashed = smash(tiny_llama(), recipe.smash_config(), device="cpu", tokenizer=tokenizer)
    smashed.save_pretrained(work / "smashed")
    base.save_pretrained(work / "base")
    report = evaluate(
        base,
        smashed,
        settings=evaluation_settings(recipe),
        tokenizer=tokenizer,
        base_path=work / "base",
        smashed_path=work / "smashed",
    )
    return str(report.to_json())


def publish_bases(api: HfApi, repo_ids: list[str], folder: Path) -> dict[str, str]:
    """The same tiny Llama published under each repo id (one commit each); ``{repo_id: revision}``."""
    from sync_support import card, tiny_llama, tiny_tokenizer

    tiny_llama().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    (folder / "README.md").write_text(card())
    revisions = {}
    for repo_id in repo_ids:
        api.create_repo(repo_id, exist_ok=True)
        revisions[repo_id] = str(
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="base").oid
        )
    return revisions


def queue_jobs(
    catalogue: Any, recipe: Recipe, revisions: dict[str, str], *, max_attempts: int = 3
) -> list[int]:
    """Queue one job per base revision directly in the catalogue (what discovery records for them)."""
    from registry_db.jobs import create_or_get_job
    from registry_db.records import upsert_base_model, upsert_recipe

    ids = []
    with catalogue.session() as session:
        row = upsert_recipe(
            session,
            namespace=catalogue.namespace,
            name=recipe.name,
            content_hash=recipe.content_hash,
            smash_config=recipe.smash_config().to_dict(),
            version=str(recipe.version),
            algorithms=list(recipe.order),
        )
        for repo_id, revision in revisions.items():
            base = upsert_base_model(
                session,
                namespace=catalogue.namespace,
                repo_id=repo_id,
                revision=revision,
                architectures=["LlamaForCausalLM"],
                model_type="llama",
                license="mit",
            )
            job, _ = create_or_get_job(session, base, row, max_attempts=max_attempts)
            ids.append(int(job.id))
    return ids


def worker_command(*args: str) -> list[str]:
    """``pruna-hub <args>`` in a fresh interpreter, with the stand-in installed."""
    return [sys.executable, str(Path(__file__).resolve()), *args]


def main(argv: list[str]) -> None:
    install()
    from pruna_hub.cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
