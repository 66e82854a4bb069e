"""Evaluation: efficiency and quality of a smashed model against its base, measured the same way.

>>> report = evaluate(base, smashed, settings=Settings(generation_lengths=(32, 128)))
>>> print(report_table(report)); plot_sweep({"base": report.base, "smashed": report.smashed}, "sweep.png")
"""

from smash.evaluation.evaluate import evaluate
from smash.evaluation.plot import plot_sweep, sweep_data, write_sweep_json
from smash.evaluation.report import (
    REPORT_FORMAT_VERSION,
    EfficiencyReport,
    EvaluationReport,
    QualityReport,
    RunMeasurement,
    SweepPoint,
)
from smash.evaluation.settings import Settings
from smash.evaluation.stats import Stats, summarize
from smash.evaluation.table import format_table, report_table

__all__ = [
    "REPORT_FORMAT_VERSION",
    "EfficiencyReport",
    "EvaluationReport",
    "QualityReport",
    "RunMeasurement",
    "Settings",
    "Stats",
    "SweepPoint",
    "evaluate",
    "format_table",
    "plot_sweep",
    "report_table",
    "summarize",
    "sweep_data",
    "write_sweep_json",
]
