"""The quality metrics a report carries, named once: key, label for people, which direction is better.

The card, the catalogue's metric rows and the quality gate all read this table, so a new metric is added
here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QualityMetric:
    key: str  # the QualityReport field (and catalogue metric name)
    label: str
    higher_is_better: bool


QUALITY_METRICS: tuple[QualityMetric, ...] = (
    QualityMetric("generation_agreement", "Greedy generation: token agreement with the base", True),
    QualityMetric("generation_prefix", "Greedy generation: matching prefix, share of new tokens", True),
    QualityMetric("generation_exact", "Greedy generation: prompts generated identically", True),
    QualityMetric("top1_agreement", "Top-1 agreement with the base", True),
    QualityMetric("kl_mean", "KL divergence from the base, mean", False),
    QualityMetric("kl_max", "KL divergence, max", False),
    QualityMetric("perplexity_base", "Perplexity of the base", False),
    QualityMetric("perplexity_smashed", "Perplexity of the smashed model", False),
    QualityMetric("cosine_mean", "Pooled-output cosine similarity with the base, mean", True),
    QualityMetric("cosine_min", "Pooled-output cosine similarity with the base, min", True),
    QualityMetric("label_agreement", "Top-1 label agreement with the base (classifiers)", True),
)
QUALITY_LABELS: dict[str, str] = {m.key: m.label for m in QUALITY_METRICS}
