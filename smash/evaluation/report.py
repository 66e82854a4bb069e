"""The evaluation report: plain dataclasses with a versioned JSON form.

Raw per-run measurements are kept next to their summaries so a report can be re-summarized later (a new
statistic, a different unit) without measuring again. ``from_dict`` reads reports written by this or an
earlier compatible version; anything else is an EvaluationSettingsError naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from smash.errors import EvaluationSettingsError
from smash.evaluation.settings import Settings
from smash.evaluation.stats import Stats

REPORT_FORMAT_VERSION = 1


def _stats(data: Any) -> Stats | None:
    return None if data is None else Stats.from_dict(data)


@dataclass(frozen=True)
class RunMeasurement:
    """One timed run: prefill (time to first token), then ``generation_length - 1`` decode steps."""

    prompt_length: int
    generation_length: int
    ttft_s: float
    step_latencies_s: tuple[float, ...]
    peak_increase_bytes: int | None
    compilations: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["step_latencies_s"] = list(self.step_latencies_s)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunMeasurement:
        return cls(**{**data, "step_latencies_s": tuple(data["step_latencies_s"])})


@dataclass(frozen=True)
class SweepPoint:
    """Summary of the measured runs at one (prompt length, generation length)."""

    prompt_length: int
    generation_length: int
    ttft_s: Stats
    decode_latency_s: Stats | None
    peak_memory_bytes: Stats | None
    decode_tokens_per_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_length": self.prompt_length,
            "generation_length": self.generation_length,
            "ttft_s": self.ttft_s.to_dict(),
            "decode_latency_s": None if self.decode_latency_s is None else self.decode_latency_s.to_dict(),
            "peak_memory_bytes": None if self.peak_memory_bytes is None else self.peak_memory_bytes.to_dict(),
            "decode_tokens_per_s": self.decode_tokens_per_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepPoint:
        return cls(
            prompt_length=data["prompt_length"],
            generation_length=data["generation_length"],
            ttft_s=Stats.from_dict(data["ttft_s"]),
            decode_latency_s=_stats(data["decode_latency_s"]),
            peak_memory_bytes=_stats(data["peak_memory_bytes"]),
            decode_tokens_per_s=data["decode_tokens_per_s"],
        )


@dataclass(frozen=True)
class EfficiencyReport:
    """Speed and memory of one model. Statistics pool every measured run of the sweep, as the article does.

    ``peak_memory_bytes``: weight bytes + the run's peak increase (see ``smash.evaluation.memory``).
    ``memory_per_token_bytes``: least-squares slope of mean peak memory against generation length over the
    sweep (``memory_per_token_method = "slope"``); with a single generation length, the run's peak increase
    divided by the tokens generated (``"increase_per_token"``, an upper bound: it includes prefill).
    ``compilations``: graph compilations (torch._dynamo frames compiled) during measured runs, i.e. after
    warm-up; ``warmup_compilations`` those during warm-up.
    """

    label: str
    device: str
    dtype: str
    decode_path: str
    weight_bytes: int
    disk_bytes: int | None
    ttft_s: Stats
    decode_latency_s: Stats | None
    decode_tokens_per_s: float | None
    peak_memory_bytes: Stats | None
    memory_per_token_bytes: float | None
    memory_per_token_method: str | None
    memory_method: str
    compilations: int
    warmup_compilations: int
    points: tuple[SweepPoint, ...]
    runs: tuple[RunMeasurement, ...]

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("points", "runs")}
        for key in ("ttft_s", "decode_latency_s", "peak_memory_bytes"):
            value = getattr(self, key)
            data[key] = None if value is None else value.to_dict()
        data["points"] = [p.to_dict() for p in self.points]
        data["runs"] = [r.to_dict() for r in self.runs]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EfficiencyReport:
        return cls(
            **{
                k: v
                for k, v in data.items()
                if k not in ("ttft_s", "decode_latency_s", "peak_memory_bytes", "points", "runs")
            },
            ttft_s=Stats.from_dict(data["ttft_s"]),
            decode_latency_s=_stats(data["decode_latency_s"]),
            peak_memory_bytes=_stats(data["peak_memory_bytes"]),
            points=tuple(SweepPoint.from_dict(p) for p in data["points"]),
            runs=tuple(RunMeasurement.from_dict(r) for r in data["runs"]),
        )


@dataclass(frozen=True)
class QualityReport:
    """The smashed model against the base on the shipped prompt set (and an evaluation text if given).

    Causal LMs: ``kl_mean`` = mean over positions of KL(base || smashed) of the next-token distributions,
    ``top1_agreement`` = share of positions whose argmax agree, both at the positions that predict the
    base model's own greedy continuation. ``generation_*``: greedy ``generate`` of both models compared
    token by token (``smash.evaluation.generation``): mean token agreement, mean matching-prefix
    fraction, share of prompts generated identically, over ``generation_new_tokens`` new tokens.
    Encoders and classifiers: ``cosine_mean``/``cosine_min`` of the last hidden states mean-pooled over
    the attention mask; with a classification head, ``label_agreement`` = share of inputs (images,
    sequences, or real tokens for token classification) whose top-1 label the smashed model keeps.
    """

    kind: str
    prompts: int
    positions: int
    kl_mean: float | None = None
    kl_max: float | None = None
    top1_agreement: float | None = None
    perplexity_base: float | None = None
    perplexity_smashed: float | None = None
    perplexity_tokens: int | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    generation_agreement: float | None = None
    generation_prefix: float | None = None
    generation_exact: float | None = None
    generation_new_tokens: int | None = None
    label_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityReport:
        return cls(**data)


@dataclass(frozen=True)
class EvaluationReport:
    settings: Settings
    environment: dict[str, Any]
    base: EfficiencyReport
    smashed: EfficiencyReport
    quality: QualityReport | None
    format_version: int = REPORT_FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "settings": self.settings.to_dict(),
            "environment": dict(self.environment),
            "base": self.base.to_dict(),
            "smashed": self.smashed.to_dict(),
            "quality": None if self.quality is None else self.quality.to_dict(),
            "extra": dict(self.extra),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> EvaluationReport:
        if not isinstance(data, Mapping):
            raise EvaluationSettingsError("report", type(data).__name__, "a JSON object")
        version = data.get("format_version")
        if version != REPORT_FORMAT_VERSION:
            raise EvaluationSettingsError(
                "format_version", version, f"{REPORT_FORMAT_VERSION} (re-run the evaluation with this smash)"
            )
        try:
            return cls(
                settings=Settings.from_dict(data["settings"]),
                environment=dict(data["environment"]),
                base=EfficiencyReport.from_dict(data["base"]),
                smashed=EfficiencyReport.from_dict(data["smashed"]),
                quality=None if data.get("quality") is None else QualityReport.from_dict(data["quality"]),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError) as e:
            raise EvaluationSettingsError(
                "report", str(e), "a report written by EvaluationReport.to_json"
            ) from e

    @classmethod
    def from_json(cls, text: str | bytes) -> EvaluationReport:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise EvaluationSettingsError("report", str(e)[:80], "valid JSON") from e
        return cls.from_dict(data)
