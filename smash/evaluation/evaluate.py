"""``evaluate(base, smashed, *, settings)``: both models measured the same way, in the same process."""

from __future__ import annotations

import os
import platform
import warnings
from typing import Any

import torch

from smash.evaluation.efficiency import measure_efficiency
from smash.evaluation.quality import evaluate_quality
from smash.evaluation.report import EvaluationReport
from smash.evaluation.settings import Settings


def environment(settings: Settings) -> dict[str, Any]:
    """What the numbers depend on besides the settings: library versions, hardware, threads, OpenMP policy."""
    import transformers

    import smash

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "smash": smash.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _check_omp(settings: Settings) -> None:
    if settings.device != "cuda" and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        warnings.warn(
            "OMP_WAIT_POLICY is not PASSIVE: OpenMP spin-waiting made prefill 20x slower on a shared CPU. "
            "Set OMP_WAIT_POLICY=PASSIVE before torch is imported (it is recorded in the report).",
            RuntimeWarning,
            stacklevel=3,
        )


def evaluate(
    base: Any,
    smashed: Any,
    *,
    settings: Settings | None = None,
    tokenizer: Any = None,
    base_path: str | os.PathLike[str] | None = None,
    smashed_path: str | os.PathLike[str] | None = None,
    labels: tuple[str, str] = ("base", "smashed"),
) -> EvaluationReport:
    """Measure base then smashed with identical inputs and settings, then compare their outputs.

    ``base_path``/``smashed_path``: saved folders, for on-disk bytes. The tokenizer (or the smashed
    PrunaModel's own) turns the shipped prompts into ids; without one, seeded random ids are used.
    """
    settings = settings or Settings()
    _check_omp(settings)
    if tokenizer is None:
        tokenizer = getattr(smashed, "__dict__", {}).get("tokenizer")
    previous_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        env = environment(settings)
        base_report = measure_efficiency(
            base, settings, label=labels[0], tokenizer=tokenizer, saved_path=base_path
        )
        smashed_report = measure_efficiency(
            smashed, settings, label=labels[1], tokenizer=tokenizer, saved_path=smashed_path
        )
        quality = evaluate_quality(base, smashed, settings, tokenizer=tokenizer) if settings.quality else None
    finally:
        torch.set_num_threads(previous_threads)
    return EvaluationReport(
        settings=settings, environment=env, base=base_report, smashed=smashed_report, quality=quality
    )
