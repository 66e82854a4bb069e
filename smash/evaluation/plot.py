"""The article's curves: decode latency and peak memory against generation length, as JSON and a PNG.

The PNG goes on model cards, so it is drawn on a bare matplotlib Figure, which renders through Agg (no
display, no pyplot state); the JSON beside it holds exactly the plotted numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smash.evaluation.report import EfficiencyReport
from smash.evaluation.table import first_prompt_points

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sweep_data(columns: Mapping[str, EfficiencyReport]) -> dict[str, Any]:
    """Per model: generation lengths with median/p99 decode latency (ms), mean TTFT (s), mean peak (GB)."""
    data: dict[str, Any] = {}
    for label, report in columns.items():
        points = first_prompt_points(report)
        data[label] = {
            "prompt_length": points[0].prompt_length if points else None,
            "generation_length": [p.generation_length for p in points],
            "decode_median_ms": [
                None if p.decode_latency_s is None else p.decode_latency_s.median * 1e3 for p in points
            ],
            "decode_p99_ms": [
                None if p.decode_latency_s is None else p.decode_latency_s.p99 * 1e3 for p in points
            ],
            "ttft_mean_s": [p.ttft_s.mean for p in points],
            "peak_memory_gb": [
                None if p.peak_memory_bytes is None else p.peak_memory_bytes.mean / 1e9 for p in points
            ],
        }
    return data


def write_sweep_json(columns: Mapping[str, EfficiencyReport], path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.write_text(json.dumps(sweep_data(columns), indent=2, sort_keys=True) + "\n")
    return out


def plot_sweep(
    columns: Mapping[str, EfficiencyReport], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Two panels: decode latency (median solid, p99 dashed) and peak memory vs generation length."""
    out = Path(path)
    sweep_figure(columns, title=title).savefig(out, format="png")
    return out


def sweep_figure(columns: Mapping[str, EfficiencyReport], *, title: str | None = None) -> Any:
    """The figure ``plot_sweep`` saves. Both y axes start at 0 (a small change must not look like a big
    one), the x axes tick whole token counts only, and memory is drawn in the unit that fits its largest
    value (GB, MB or KB), so a small model's peak is not a row of "0.00 GB"."""
    from matplotlib.figure import Figure  # a bare Figure renders through Agg; pyplot's global state untouched
    from matplotlib.ticker import MaxNLocator

    data = sweep_data(columns)
    peaks = [v for series in data.values() for v in series["peak_memory_gb"] if v is not None]
    unit, scale = memory_unit(max(peaks, default=0.0) * 1e9)
    figure = Figure(figsize=(11, 5), dpi=100)
    latency, memory = figure.subplots(1, 2)
    for label, series in data.items():
        x = series["generation_length"]
        line = latency.plot(x, _nan(series["decode_median_ms"]), marker="o", label=label)[0]
        latency.plot(x, _nan(series["decode_p99_ms"]), linestyle="--", color=line.get_color())
        gb = [None if v is None else v * 1e9 / scale for v in series["peak_memory_gb"]]
        memory.plot(x, _nan(gb), marker="o", color=line.get_color())
    latency.set(xlabel="generated tokens", ylabel="ms per token (solid: median, dashed: p99)")
    latency.set_title("Decode latency")
    memory.set(xlabel="generated tokens", ylabel=f"peak memory ({unit})", title="Peak memory")
    for axes in (latency, memory):
        axes.grid(True, alpha=0.3)
        axes.set_ylim(bottom=0)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.legend(loc="lower center", ncols=min(len(columns), 3), frameon=False)
    if title:
        figure.suptitle(title)
    # Fixed margins for this fixed figure size: tight_layout measured every label first and was ~40% of
    # the plot's time, which the service pays for every published model.
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.87 if title else 0.92, wspace=0.22)
    return figure


def memory_unit(largest_bytes: float) -> tuple[str, float]:
    """(unit, bytes per unit) in which ``largest_bytes`` reads as at least 1."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if largest_bytes >= scale:
            return unit, scale
    return "KB", 1e3


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]
