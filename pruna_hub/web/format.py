"""Jinja filters: numbers with units, byte sizes, ratios and timestamps as the CLI prints them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def number(value: float | None, unit: str | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return f"{text} {unit}" if unit else text


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"  # pragma: no cover - the loop always returns


def when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def combine_offset(query: dict[str, str], offset: int) -> dict[str, str]:
    """The list's query string for another page."""
    return {**query, "offset": str(max(offset, 0))}


FILTERS = {
    "combine_offset": combine_offset,
    "number": number,
    "ratio": ratio,
    "size": size,
    "when": when,
    "pretty_json": pretty_json,
}
