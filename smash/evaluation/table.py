"""The base-vs-smashed table in the layout of the reference article, for any number of columns.

Units are decimal (GB = 1e9 bytes, MB = 1e6 bytes), as in the article.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from smash.evaluation.report import EfficiencyReport, EvaluationReport, QualityReport, SweepPoint

Row = tuple[str, Callable[[EfficiencyReport], str]]


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ttft(r: EfficiencyReport) -> str:
    return " / ".join(_num(v) for v in (r.ttft_s.mean, r.ttft_s.std, r.ttft_s.max))


def _decode(r: EfficiencyReport) -> str:
    d = r.decode_latency_s
    if d is None:
        return "n/a"
    return " / ".join(_num(v * 1e3) for v in (d.mean, d.median, d.std, d.p99))


def _peak(r: EfficiencyReport) -> str:
    p = r.peak_memory_bytes
    return "n/a" if p is None else f"{p.mean / 1e9:.3f} / {p.std / 1e9:.3f}"


def _per_token(r: EfficiencyReport) -> str:
    return "n/a" if r.memory_per_token_bytes is None else f"{r.memory_per_token_bytes / 1e6:.3f}"


def first_prompt_points(r: EfficiencyReport) -> list[SweepPoint]:
    """The sweep at the first prompt length, ordered by generation length (what the curves show)."""
    first = r.points[0].prompt_length if r.points else 0
    return sorted((p for p in r.points if p.prompt_length == first), key=lambda p: p.generation_length)


def _sweep(r: EfficiencyReport) -> str:
    points = [p for p in first_prompt_points(r) if p.peak_memory_bytes is not None]
    if not points:
        return "n/a"
    lo, hi = points[0], points[-1]
    assert lo.peak_memory_bytes is not None and hi.peak_memory_bytes is not None
    return f"{lo.peak_memory_bytes.mean / 1e9:.3f} -> {hi.peak_memory_bytes.mean / 1e9:.3f}"


def _sweep_label(columns: Mapping[str, EfficiencyReport]) -> str:
    lengths = sorted({p.generation_length for r in columns.values() for p in first_prompt_points(r)})
    span = f"{lengths[0]} -> {lengths[-1]} tokens" if lengths else "sweep"
    return f"peak memory {span} GB"


ROWS: tuple[Row, ...] = (
    ("prefill (TTFT) mean / std / max s", _ttft),
    ("decode latency mean / median / std / p99 ms", _decode),
    ("decode throughput tokens/s", lambda r: _num(r.decode_tokens_per_s, 1)),
    ("peak memory / std GB", _peak),
    ("memory per generated token MB", _per_token),
    ("", _sweep),  # label filled in from the sweep lengths
    ("compilations after warm-up (during warm-up)", lambda r: f"{r.compilations} ({r.warmup_compilations})"),
    ("weights MB", lambda r: f"{r.weight_bytes / 1e6:.1f}"),
    ("on disk MB", lambda r: "n/a" if r.disk_bytes is None else f"{r.disk_bytes / 1e6:.1f}"),
    ("dtype / decode path", lambda r: f"{r.dtype} / {r.decode_path}"),
)


def _quality_rows(quality: Mapping[str, QualityReport | None]) -> list[tuple[str, list[str]]]:
    values = list(quality.values())

    def row(
        label: str, get: Callable[[QualityReport], float | None], digits: int = 4
    ) -> tuple[str, list[str]]:
        return label, [_num(get(q), digits) if q is not None else "-" for q in values]

    rows = [
        row("KL(base || model) mean", lambda q: q.kl_mean),
        row("top-1 agreement with base", lambda q: q.top1_agreement),
    ]
    if any(q is not None and q.generation_agreement is not None for q in values):
        rows.append(row("greedy generation: token agreement", lambda q: q.generation_agreement))
        rows.append(row("greedy generation: matching prefix", lambda q: q.generation_prefix))
    if any(q is not None and q.perplexity_smashed is not None for q in values):
        rows.append(row("perplexity on the evaluation text", lambda q: q.perplexity_smashed, 2))
    if any(q is not None and q.cosine_mean is not None for q in values):
        rows.append(row("pooled-output cosine mean", lambda q: q.cosine_mean))
    return rows


def format_table(
    columns: Mapping[str, EfficiencyReport], quality: Mapping[str, QualityReport | None] | None = None
) -> str:
    """A Markdown table: one row per metric, one column per model."""
    header = ["metric", *columns]
    rows = [[label or _sweep_label(columns), *(fmt(r) for r in columns.values())] for label, fmt in ROWS]
    if quality:
        rows += [[label, *cells] for label, cells in _quality_rows(quality)]
    widths = [max(len(str(line[i])) for line in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def reference_quality(quality: QualityReport) -> QualityReport:
    """The base model's own column: KL 0, agreement 1, its perplexity, cosine 1 (same prompt set)."""
    return QualityReport(
        kind=quality.kind,
        prompts=quality.prompts,
        positions=quality.positions,
        kl_mean=0.0,
        top1_agreement=1.0,
        perplexity_smashed=quality.perplexity_base,
        cosine_mean=1.0 if quality.cosine_mean is not None else None,
        generation_agreement=1.0 if quality.generation_agreement is not None else None,
        generation_prefix=1.0 if quality.generation_prefix is not None else None,
    )


def report_table(report: EvaluationReport) -> str:
    """The two-column table of an EvaluationReport; the base column's quality cells are the reference."""
    columns = {report.base.label: report.base, report.smashed.label: report.smashed}
    quality = None
    if report.quality is not None:
        quality = {report.base.label: reference_quality(report.quality), report.smashed.label: report.quality}
    return format_table(columns, quality)
