"""Settings: every knob of an evaluation, explicit and recorded next to the numbers it produced.

Numbers measured with different prompt lengths, repetitions or thread counts are not comparable, so the
settings travel inside every report (``EvaluationReport.settings``) and round-trip through JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from smash.errors import EvaluationSettingsError

DECODE_PATHS = ("auto", "loop", "generate", "runtime")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Settings:
    """How base and smashed models are measured.

    Efficiency: for every prompt length and every generation length, ``measured_runs`` timed runs after
    ``warmup_runs`` untimed ones. Warm-up happens once per model, at the first (prompt, generation)
    length only, on purpose: a runtime that recompiles when a later, longer generation changes shapes
    shows it as spikes in the measured runs, which is what the reference article compares.

    ``decode_path``: ``loop`` times a hand-written greedy loop around ``forward`` with a KV cache;
    ``generate`` times the model's own ``generate`` through a streamer (what users of a runtime with its
    own generation path get); ``runtime`` times the static-cache runtime's own prefill and decode graphs
    (``smash.runtime``) step by step; ``auto`` picks ``runtime`` for models that carry one, ``generate``
    for other models whose config holds a cacher, else ``loop``.

    ``threads``: ``None`` keeps torch's current setting; the value in effect is recorded in the report.
    ``device``: ``None`` measures each model where its weights are. dtypes are not changed: each model
    runs in its own dtype, which the report records per model.
    """

    prompt_lengths: tuple[int, ...] = (128,)
    generation_lengths: tuple[int, ...] = (32, 64, 128)
    batch_size: int = 1
    warmup_runs: int = 1
    measured_runs: int = 3
    threads: int | None = None
    device: str | None = None
    decode_path: str = "auto"
    seed: int = 0
    # quality
    quality: bool = True
    quality_prompts: int | None = None
    quality_new_tokens: int = 32
    use_chat_template: bool = True
    quality_eager: bool = True
    eval_text: str | None = None
    ppl_window: int = 512
    ppl_max_tokens: int = 2048

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_lengths", _lengths("prompt_lengths", self.prompt_lengths))
        object.__setattr__(
            self, "generation_lengths", _lengths("generation_lengths", self.generation_lengths)
        )
        for name in ("batch_size", "measured_runs", "quality_new_tokens", "ppl_window", "ppl_max_tokens"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("warmup_runs", self.warmup_runs, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        if self.threads is not None:
            _check_int("threads", self.threads, minimum=1)
        if self.quality_prompts is not None:
            _check_int("quality_prompts", self.quality_prompts, minimum=1)
        if self.device is not None and self.device not in DEVICES:
            raise EvaluationSettingsError("device", self.device, f"one of {', '.join(DEVICES)} or null")
        if self.decode_path not in DECODE_PATHS:
            raise EvaluationSettingsError(
                "decode_path", self.decode_path, f"one of {', '.join(DECODE_PATHS)}"
            )
        for name in ("quality", "use_chat_template", "quality_eager"):
            if not isinstance(getattr(self, name), bool):
                raise EvaluationSettingsError(name, getattr(self, name), "a boolean")
        if self.eval_text is not None and not isinstance(self.eval_text, str):
            raise EvaluationSettingsError("eval_text", self.eval_text, "a path to a UTF-8 text file, or null")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompt_lengths"] = list(self.prompt_lengths)
        data["generation_lengths"] = list(self.generation_lengths)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        if not isinstance(data, Mapping):
            raise EvaluationSettingsError("settings", data, "a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise EvaluationSettingsError(
                unknown[0], data[unknown[0]], "known settings are " + ", ".join(sorted(known))
            )
        return cls(**data)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise EvaluationSettingsError(name, value, f"an integer >= {minimum}")


def _lengths(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, list | tuple) or not value:
        raise EvaluationSettingsError(name, value, "a non-empty list of integers >= 1")
    for item in value:
        _check_int(name, item, minimum=1)
    return tuple(value)
