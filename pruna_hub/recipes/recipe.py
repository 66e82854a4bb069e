"""One recipe: which models it is for, how they are smashed, evaluated, gated and named when published.

A recipe is a TOML file whose stem is the recipe's name. Everything in it is validated when it is read,
including the SmashConfig (through the engine's registry) and its algorithm order
(``determine_algorithm_order``), so an impossible recipe fails when it is loaded, never inside a job.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from pruna_hub.errors import RecipeError
from pruna_hub.recipes._reader import TableReader
from pruna_hub.recipes.evaluation import check_evaluation_table
from pruna_hub.recipes.profile import ATTENTION_KINDS, ModelProfile
from pruna_hub.recipes.smashing import check_smash_table

RECIPE_FORMAT = 1
DEVICES = ("cpu", "cuda")
NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,63}"
ARCHITECTURE_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
MODEL_TYPE_PATTERN = r"[a-z0-9_-]{1,64}"
TOP_LEVEL = (
    "description",
    "version",
    "priority",
    "rank_by",
    "device",
    "match",
    "smash",
    "evaluation",
    "quality_gate",
    "budget",
    "publish",
)
REQUIRED = ("version", "priority", "device", "match", "smash", "quality_gate", "budget", "publish")
TEMPLATE_FIELDS = ("target_org", "author", "name", "recipe")
_TEMPLATE_LITERAL = r"[A-Za-z0-9._-]*"
# How recipes tied at the same priority are told apart: only by measurement on the running host.
RANK_BY = ("decode_latency",)
_EXAMPLE_VALUES = {"target_org": "org", "author": "author", "name": "Model-1B", "recipe": "recipe"}


@dataclass(frozen=True)
class GateCheck:
    """One threshold of a quality gate: the recipe field, the measured value it reads, which side passes."""

    field: str
    metric: str  # a QualityReport key, or a value the gate derives (perplexity_ratio, decode_ratio)
    label: str
    at_least: bool
    maximum: float | None = None  # the largest value a recipe may set (agreements are fractions)
    minimum: float = 0.0


GATE_CHECKS: tuple[GateCheck, ...] = (
    GateCheck(
        "min_generation_agreement", "generation_agreement", "greedy generation token agreement", True, 1.0
    ),
    GateCheck("min_generation_prefix", "generation_prefix", "greedy generation matching prefix", True, 1.0),
    GateCheck("min_top1_agreement", "top1_agreement", "top-1 agreement", True, 1.0),
    GateCheck("max_kl", "kl_mean", "KL divergence", False),
    GateCheck("max_perplexity_ratio", "perplexity_ratio", "perplexity ratio", False, minimum=1.0),
    GateCheck("min_cosine", "cosine_min", "pooled-output cosine similarity (min)", True, 1.0),
    # speed: the smashed decode median over the base's; above 1.0 the smashed model is slower
    GateCheck("max_decode_ratio", "decode_ratio", "decode latency ratio to the base", False),
    # classifiers: share of inputs whose top-1 label the smashed model keeps
    GateCheck("min_label_agreement", "label_agreement", "top-1 label agreement", True, 1.0),
    # speed of models that do not decode (encoders, classifiers): smashed forward (TTFT) mean over the base's
    GateCheck("max_latency_ratio", "latency_ratio", "forward latency ratio to the base", False),
)
GATE_FIELDS = tuple(check.field for check in GATE_CHECKS)


@dataclass(frozen=True)
class QualityGate:
    """Thresholds the smashed model must meet against its base before anything is published.

    Quality (greedy generations, next-token agreement, KL, perplexity, cosine for encoders) and speed
    (``max_decode_ratio``: a smashed model slower than its base is not published).
    """

    min_generation_agreement: float | None = None
    min_generation_prefix: float | None = None
    min_top1_agreement: float | None = None
    max_kl: float | None = None
    max_perplexity_ratio: float | None = None
    min_cosine: float | None = None
    max_decode_ratio: float | None = None
    min_label_agreement: float | None = None
    max_latency_ratio: float | None = None

    def failures(self, measured: Mapping[str, float | None]) -> list[str]:
        """Why the gate is closed (empty when it passes). A threshold without its measurement fails."""
        reasons = []
        for check in GATE_CHECKS:
            limit = getattr(self, check.field)
            if limit is None:
                continue
            value = measured.get(check.metric)
            if not isinstance(value, int | float) or value != value:  # missing, or NaN
                reasons.append(f"{check.label} was not measured (gate {limit})")
            elif (value < limit) if check.at_least else (value > limit):
                bound = ">=" if check.at_least else "<="
                reasons.append(f"{check.label} {value:.4g} is not {bound} {limit:.4g}")
        return reasons

    def failures_from(
        self, quality: Mapping[str, Any] | None, *, decode_ratio: float | None = None
    ) -> list[str]:
        """The same, from a quality report's dict (``QualityReport.to_dict()``) and the decode ratio."""
        quality = dict(quality or {})
        base, smashed = quality.get("perplexity_base"), quality.get("perplexity_smashed")
        if isinstance(base, int | float) and isinstance(smashed, int | float) and base:
            quality["perplexity_ratio"] = smashed / base
        return self.failures({**quality, "decode_ratio": decode_ratio})

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class SizeBudget:
    """The largest base model the recipe accepts (parameters and/or weight bytes)."""

    max_parameters: int | None = None
    max_bytes: int | None = None

    def exceeded(self, *, parameters: int | None = None, nbytes: int | None = None) -> str | None:
        """Why the model is over budget, or None. A size that is not known is not checked here."""
        if self.max_parameters is not None and parameters is not None and parameters > self.max_parameters:
            return f"{parameters:,} parameters exceed the budget of {self.max_parameters:,}"
        if self.max_bytes is not None and nbytes is not None and nbytes > self.max_bytes:
            return f"{nbytes:,} weight bytes exceed the budget of {self.max_bytes:,}"
        return None

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True, eq=False)
class Recipe:
    """A validated recipe. Equality and the catalogue identity are the ``content_hash``."""

    name: str
    version: int
    description: str
    priority: int
    device: str
    architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    smash: Mapping[str, Mapping[str, Any]]  # resolved hyperparameters, defaults filled in
    order: tuple[str, ...]
    evaluation: Mapping[str, Any]
    quality_gate: QualityGate
    budget: SizeBudget
    repo_template: str
    source: Path
    builtin: bool = False
    overrides: Path | None = field(default=None)
    rank_by: str | None = None  # set: a tie at its priority is decided by measurement (recipes.ranking)
    attention: tuple[str, ...] = ()  # attention kinds it serves (profile.ATTENTION_KINDS); empty: any
    moe: bool | None = None  # True: only mixture-of-experts models; False: none; None: either

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recipe) and other.content_hash == self.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def smash_config(self) -> Any:
        """A fresh ``smash.SmashConfig`` (imported lazily: listing recipes must not need a model)."""
        from smash import SmashConfig

        return SmashConfig(self.smash)

    def canonical(self) -> dict[str, Any]:
        """The content that decides what gets published; ``description``, ``priority`` and ``rank_by``
        are left out so that editing prose or re-ranking recipes does not re-smash every model."""
        return {
            "format": RECIPE_FORMAT,
            "name": self.name,
            "version": self.version,
            "device": self.device,
            "match": self._canonical_match(),
            "smash": {name: dict(params) for name, params in self.smash.items()},
            "order": list(self.order),
            "evaluation": {k: list(v) if isinstance(v, tuple) else v for k, v in self.evaluation.items()},
            "quality_gate": self.quality_gate.to_dict(),
            "budget": self.budget.to_dict(),
            "publish": {"repo_template": self.repo_template},
        }

    def _canonical_match(self) -> dict[str, Any]:
        match: dict[str, Any] = {
            "architectures": sorted(self.architectures),
            "model_types": sorted(self.model_types),
        }
        if self.attention:  # only when set: recipes written before these keys keep their hashes
            match["attention"] = sorted(self.attention)
        if self.moe is not None:
            match["moe"] = self.moe
        return match

    @property
    def content_hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Everything, for ``recipes show --format json``."""
        data = self.canonical()
        data.update(
            description=self.description,
            priority=self.priority,
            rank_by=self.rank_by,
            source=str(self.source),
            builtin=self.builtin,
            overrides=str(self.overrides) if self.overrides else None,
            content_hash=self.content_hash,
        )
        return data

    def matches(self, profile: ModelProfile, device: str) -> bool:
        """Every non-empty criterion must hold: one of the model's architectures, its model type, its
        attention kind and whether it is a mixture of experts."""
        if device != self.device:
            return False
        if self.architectures and not set(profile.architectures) & set(self.architectures):
            return False
        if self.model_types and profile.model_type not in self.model_types:
            return False
        if self.attention and profile.attention not in self.attention:
            return False
        return self.moe is None or self.moe == profile.moe

    def overlaps(self, other: Recipe) -> bool:
        """Whether some model config on some device could match both recipes."""
        if self.device != other.device:
            return False
        for mine, theirs in (
            (self.architectures, other.architectures),
            (self.model_types, other.model_types),
            (self.attention, other.attention),
        ):
            if mine and theirs and not set(mine) & set(theirs):
                return False
        return self.moe is None or other.moe is None or self.moe == other.moe

    def repo_id(self, base_repo_id: str, *, target_org: str) -> str:
        """The repo the smashed copy of ``base_repo_id`` is published to, validated as a Hub repo id."""
        author, _, name = base_repo_id.rpartition("/")
        return render_repo_template(
            self.repo_template,
            {"target_org": target_org, "author": author or target_org, "name": name, "recipe": self.name},
            path=str(self.source),
        )


def render_repo_template(template: str, values: Mapping[str, str], *, path: str) -> str:
    repo_id = template.format_map(dict(values))
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise RecipeError(
            path,
            "publish.repo_template",
            f"renders to {repo_id!r}, which is not a valid Hub repo id ({e})",
            "Shorten the template or change its literal parts.",
        ) from e
    return repo_id


# --- parsing ---------------------------------------------------------------------------------------------


def parse_recipe_file(path: Path, *, builtin: bool = False) -> Recipe:
    """Read and validate one recipe file."""
    name = path.stem
    if not re.fullmatch(NAME_PATTERN, name):
        raise RecipeError(
            str(path),
            "name",
            f"the file name {name!r} does not match {NAME_PATTERN}",
            "Rename the file: its stem is the recipe's name.",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(str(path), "(syntax)", f"not valid TOML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(str(path), "(file)", f"cannot be read: {e}") from e
    return parse_recipe(data, name=name, path=path, builtin=builtin)


def parse_recipe(data: Mapping[str, Any], *, name: str, path: Path, builtin: bool = False) -> Recipe:
    top = TableReader(str(path), data)
    top.check_keys(TOP_LEVEL, REQUIRED)
    device = top.string("device", choices=DEVICES)
    match = top.subtable("match")
    architectures, model_types = _parse_match(match)
    smash, order = check_smash_table(top.subtable("smash"), device=device)
    evaluation = check_evaluation_table(top.subtable("evaluation", required=False), device=device)
    _check_cache_fits(top, smash, evaluation)
    return Recipe(
        name=name,
        version=top.integer("version", minimum=1),
        description=top.string("description", default=""),
        priority=top.integer("priority", minimum=-1000, maximum=1000),
        rank_by=top.string("rank_by", choices=RANK_BY, default=None),
        device=device,
        architectures=architectures,
        model_types=model_types,
        attention=match.string_list("attention", pattern="|".join(ATTENTION_KINDS)),
        moe=match.boolean("moe", default=None),
        smash=smash,
        order=order,
        evaluation=evaluation,
        quality_gate=_parse_gate(top.subtable("quality_gate")),
        budget=_parse_budget(top.subtable("budget")),
        repo_template=_parse_publish(top.subtable("publish")),
        source=path,
        builtin=builtin,
    )


def _check_cache_fits(top: TableReader, smash: Mapping[str, Any], evaluation: Mapping[str, Any]) -> None:
    """A pre-allocated KV cache must hold the longest prompt + generation the evaluation asks for, or the
    job would fail in its benchmark; caught here instead."""
    cache_len = smash.get("static_cache", {}).get("max_cache_len")
    longest = max(evaluation["prompt_lengths"]) + max(evaluation["generation_lengths"])
    if isinstance(cache_len, int) and longest > cache_len:
        raise top.error(
            "smash.static_cache.max_cache_len",
            f"{cache_len} cannot hold the longest evaluation request ({longest} tokens: prompt + generation)",
            "Raise max_cache_len or shorten [evaluation] prompt_lengths / generation_lengths.",
        )


def _parse_match(table: TableReader) -> tuple[tuple[str, ...], tuple[str, ...]]:
    table.check_keys(("architectures", "model_types", "attention", "moe"))
    architectures = table.string_list("architectures", pattern=ARCHITECTURE_PATTERN)
    model_types = table.string_list("model_types", pattern=MODEL_TYPE_PATTERN)
    if not architectures and not model_types:
        raise table.error("", "matches every model", "Name at least one architecture or model type.")
    return architectures, model_types


def _parse_gate(table: TableReader) -> QualityGate:
    table.check_keys(GATE_FIELDS)
    gate = QualityGate(
        **{
            check.field: table.number(check.field, minimum=check.minimum, maximum=check.maximum, default=None)
            for check in GATE_CHECKS
        }
    )
    if not gate.to_dict():
        raise table.error(
            "", "sets no threshold", "Set at least min_generation_agreement, min_top1_agreement or max_kl."
        )
    return gate


def _parse_budget(table: TableReader) -> SizeBudget:
    table.check_keys(("max_parameters", "max_bytes"))
    budget = SizeBudget(
        max_parameters=table.integer("max_parameters", minimum=1, default=None),
        max_bytes=table.integer("max_bytes", minimum=1, default=None),
    )
    if not budget.to_dict():
        raise table.error("", "sets no limit", "Set max_parameters and/or max_bytes.")
    return budget


def _parse_publish(table: TableReader) -> str:
    table.check_keys(("repo_template",), ("repo_template",))
    template: str = table.string("repo_template")
    fields = _template_fields(table, template)
    org, slash, rest = template.partition("/")
    if org != "{target_org}" or not slash:
        raise table.error(
            "repo_template",
            f"{template!r} must start with '{{target_org}}/'",
            "The organisation comes from --target-org / PRUNA_HUB_TARGET_ORG.",
        )
    if "name" not in fields or "/" in rest:
        raise table.error(
            "repo_template",
            f"{template!r} must name the repo with {{name}} after the '/'",
            "Without the base model's name every model would publish to one repo.",
        )
    render_repo_template(template, _EXAMPLE_VALUES, path=table.path)
    return template


def _template_fields(table: TableReader, template: str) -> set[str]:
    fields: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise table.error("repo_template", f"{template!r} is not a valid template ({e})") from e
    for literal, field_name, spec, conversion in parsed:
        if not re.fullmatch(_TEMPLATE_LITERAL, literal.replace("/", "")):
            raise table.error("repo_template", f"literal text {literal!r} may only use A-Z a-z 0-9 . _ -")
        if field_name is None:
            continue
        if field_name not in TEMPLATE_FIELDS or spec or conversion:
            raise table.error(
                "repo_template",
                f"placeholder {{{field_name}}} is not allowed",
                f"Use only {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}, without formats.",
            )
        fields.add(field_name)
    return fields
