"""The model card of a published smashed model, built with huggingface_hub's ModelCard / ModelCardData.

The input is plain data (``CardInput``), so this module depends on neither the evaluation classes nor the
catalogue. Text that comes from the base model's card is untrusted:

- Into the YAML header only values that match a strict pattern or a known list go: license ids from the
  Hub's list, ``license_name`` as a lowercase slug, ``license_link`` as a plain https URL or a relative
  path (made absolute on the base repo at the pinned revision), pipeline tags from a known list, tags and
  language codes matching safe patterns. Everything else is dropped, never quoted through.
- In the body, every string from outside is backslash-escaped (all ASCII punctuation, which CommonMark
  allows) with newlines flattened, so it cannot open links, HTML, code fences or table cells.

License decision: the base's license is copied when it is a Hub license id. ``other`` is kept with its
(sanitised) ``license_name`` and a ``license_link`` that points to the base's terms. When the base card
declares no license, or one that is not a Hub id, the header says ``license: unknown`` (a Hub license id)
and the body says so in words; nothing is ever defaulted to a permissive license.

``base_model_relation`` is ``quantized`` when an algorithm of the quantizer group ran. The Hub knows no
relation for pruning or compiling alone (its values are adapter, merge, quantized, finetune), so then the
field is left out and the Hub infers it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from pruna_hub.errors import CardError
from smash.evaluation.metrics import QUALITY_LABELS

LIBRARY_NAME = "smash"  # the library that loads the files: `from smash import PrunaModel`
OUR_TAGS = ("pruna-hub", "smashed")
SNIPPET_START = "<!-- pruna-hub:snippet:start -->"
SNIPPET_END = "<!-- pruna-hub:snippet:end -->"
PROMPT = "The best thing about small models is"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


HUB_LICENSES = _words(
    "apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "
    "bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda "
    "cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 "
    "cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 "
    "cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 "
    "etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research "
    "intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql "
    "ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license "
    "llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma"
)
PIPELINE_TAGS = _words(
    "text-generation text2text-generation fill-mask feature-extraction sentence-similarity "
    "text-classification token-classification question-answering summarization translation "
    "zero-shot-classification image-text-to-text"
)
# Tags that describe the base repo's files or Hub-side features rather than this artifact.
_DROPPED_TAGS = _words(
    "transformers transformers.js mlx pytorch tf jax onnx gguf safetensors endpoints_compatible "
    "autotrain_compatible text-generation-inference"
)
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")
_LICENSE_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
_URL = re.compile(r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~/%-]*)?")
_RELATIVE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}")
_PLOT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}\.(png|svg|jpg|jpeg|webp)")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")

# Known metric keys -> (label, unit, lower is better). Keys of ``flatten_efficiency``'s output.
METRICS: Mapping[str, tuple[str, str, bool]] = {
    "ttft_s.mean": ("Time to first token (prefill), mean", "ms", True),
    "ttft_s.std": ("Time to first token, std", "ms", True),
    "ttft_s.max": ("Time to first token, max", "ms", True),
    "decode_latency_s.mean": ("Decode latency per token, mean", "ms", True),
    "decode_latency_s.median": ("Decode latency per token, median", "ms", True),
    "decode_latency_s.std": ("Decode latency per token, std", "ms", True),
    "decode_latency_s.p99": ("Decode latency per token, p99", "ms", True),
    "decode_tokens_per_s": ("Decode throughput", "tokens/s", False),
    "peak_memory_bytes.mean": ("Peak memory, mean", "GB", True),
    "peak_memory_bytes.std": ("Peak memory, std", "GB", True),
    "memory_per_token_bytes": ("Memory per generated token", "MB", True),
    "weight_bytes": ("Weight bytes", "MB", True),
    "disk_bytes": ("Size on disk", "MB", True),
    "compilations": ("Graph compilations after warm-up", "", True),
}
QUALITY: Mapping[str, str] = QUALITY_LABELS
_SCALE = {"ms": 1e3, "GB": 1e-9, "MB": 1e-6, "tokens/s": 1.0, "": 1.0}


@dataclass(frozen=True)
class BaseCard:
    """What was read from the base model's card (untrusted; sanitised when rendered)."""

    license: Any = None
    license_name: Any = None
    license_link: Any = None
    pipeline_tag: Any = None
    tags: Any = ()
    language: Any = ()

    @classmethod
    def from_card_data(cls, data: Mapping[str, Any] | None) -> BaseCard:
        """From ``ModelCard.load(base).data.to_dict()`` or ``model_info(base).card_data``."""
        data = data or {}
        keys = ("license", "license_name", "license_link", "pipeline_tag", "tags", "language")
        return cls(**{k: data.get(k) for k in keys if data.get(k) is not None})


@dataclass(frozen=True)
class AppliedAlgorithm:
    name: str
    group: str
    hyperparameters: Mapping[str, Any]


@dataclass(frozen=True)
class CardInput:
    """Everything a card shows. ``metrics`` maps ``"base"``/``"smashed"`` to ``METRICS`` keys -> numbers."""

    repo_id: str
    base_repo_id: str
    base_revision: str
    base: BaseCard
    recipe_name: str
    recipe_version: int
    recipe_hash: str
    device: str
    algorithms: Sequence[AppliedAlgorithm]
    smash_config_json: str
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    quality: Mapping[str, float] = field(default_factory=dict)
    quality_gate: Mapping[str, float] = field(default_factory=dict)
    hardware: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    plot_filename: str | None = None
    hub_url: str = "https://huggingface.co"
    dataset_name: str = "pruna-hub prompt set"


# --- sanitising ------------------------------------------------------------------------------------------


def md(value: object) -> str:
    """Untrusted text for a Markdown body: one line, every ASCII punctuation character escaped."""
    text = " ".join(str(value).split())
    return _PUNCTUATION.sub(r"\\\1", text)


def safe_tags(base_tags: Any, algorithms: Sequence[AppliedAlgorithm]) -> list[str]:
    tags = [t for t in _strings(base_tags) if _TAG.fullmatch(t) and t.lower() not in _DROPPED_TAGS]
    ours = [*OUR_TAGS, *(a.name for a in algorithms)]
    return list(dict.fromkeys([*tags[:30], *ours]))


def safe_license(base: BaseCard, *, hub_url: str, base_repo_id: str, revision: str) -> dict[str, str]:
    """The license fields of the header (see the module docstring for the rules)."""
    license_id = base.license if isinstance(base.license, str) else None
    if license_id in HUB_LICENSES:
        return {"license": license_id}
    if license_id != "other":
        return {"license": "unknown"}
    fields = {"license": "other"}
    if isinstance(base.license_name, str) and _LICENSE_NAME.fullmatch(base.license_name):
        fields["license_name"] = base.license_name
    link = base.license_link if isinstance(base.license_link, str) else None
    if link is not None and _URL.fullmatch(link):
        fields["license_link"] = link
    elif link is not None and _RELATIVE.fullmatch(link) and ".." not in link:
        fields["license_link"] = f"{hub_url}/{base_repo_id}/blob/{revision}/{link}"
    else:
        fields["license_link"] = f"{hub_url}/{base_repo_id}"
    return fields


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _check_input(data: CardInput) -> None:
    for name in ("repo_id", "base_repo_id"):
        try:
            validate_repo_id(getattr(data, name))
        except HFValidationError as e:
            raise CardError(name, getattr(data, name), f"not a Hub repo id ({e})") from e
    if not _SHA.fullmatch(data.recipe_hash):
        raise CardError("recipe_hash", data.recipe_hash, "expected a hex sha256")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", data.base_revision):
        raise CardError("base_revision", data.base_revision, "expected a commit sha or a ref name")
    plot = data.plot_filename
    if plot is not None and (not _PLOT.fullmatch(plot) or ".." in plot):
        raise CardError("plot_filename", data.plot_filename, "expected a relative image path in the repo")
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", data.hub_url):
        raise CardError("hub_url", data.hub_url, "expected a scheme and host, like https://huggingface.co")
    if data.device not in ("cpu", "cuda"):
        raise CardError("device", data.device, "expected cpu or cuda")


# --- header ----------------------------------------------------------------------------------------------


def card_data(data: CardInput) -> ModelCardData:
    license_fields = safe_license(
        data.base, hub_url=data.hub_url, base_repo_id=data.base_repo_id, revision=data.base_revision
    )
    pipeline_tag = data.base.pipeline_tag if data.base.pipeline_tag in PIPELINE_TAGS else None
    language = [c for c in _strings(data.base.language) if _LANGUAGE.fullmatch(c)] or None
    extra: dict[str, Any] = dict(license_fields)
    if any(a.group == "quantizer" for a in data.algorithms):
        extra["base_model_relation"] = "quantized"
    return ModelCardData(
        base_model=data.base_repo_id,
        library_name=LIBRARY_NAME,
        pipeline_tag=pipeline_tag,
        tags=safe_tags(data.base.tags, data.algorithms),
        language=language,
        model_name=data.repo_id,
        eval_results=eval_results(data, pipeline_tag or "text-generation") or None,
        **extra,
    )


def eval_results(data: CardInput, task_type: str) -> list[EvalResult]:
    """model-index entries: the quality numbers and the smashed model's known efficiency numbers."""
    values: list[tuple[str, str, float]] = [
        (key, label, float(data.quality[key]))
        for key, label in QUALITY.items()
        if _number(data.quality.get(key))
    ]
    smashed = data.metrics.get("smashed", {})
    values += [
        (key, spec[0], float(smashed[key])) for key, spec in METRICS.items() if _number(smashed.get(key))
    ]
    return [
        EvalResult(
            task_type=task_type,
            dataset_type="pruna-hub/prompts",
            dataset_name=data.dataset_name,
            metric_type=key.replace(".", "_"),
            metric_name=label,
            metric_value=round(value, 6),
        )
        for key, label, value in values
    ]


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN


# --- body ------------------------------------------------------------------------------------------------


def snippet(repo_id: str, device: str) -> str:
    load = f'PrunaModel.from_pretrained("{repo_id}"' + (', device="cuda")' if device == "cuda" else ")")
    return "\n".join(
        [
            "from smash import PrunaModel",
            "",
            f"model = {load}",
            "tokenizer = model.tokenizer",
            f'inputs = tokenizer("{PROMPT}", return_tensors="pt").to(model.device)',
            "output = model.generate(**inputs, max_new_tokens=16, do_sample=False)",
            "print(tokenizer.decode(output[0], skip_special_tokens=True))",
        ]
    )


def extract_snippet(card_text: str) -> str:
    """The how-to-use Python code of a card written by ``render_card`` (so tests can execute it)."""
    match = re.search(
        re.escape(SNIPPET_START) + r"\s*```python\n(.*?)\n```\s*" + re.escape(SNIPPET_END),
        card_text,
        re.DOTALL,
    )
    if match is None:
        raise CardError("snippet", None, "the card has no how-to-use snippet between the pruna-hub markers")
    return match.group(1)


def _algorithms_section(data: CardInput) -> list[str]:
    lines = ["## What was done", "", "| # | algorithm | group | hyperparameters |", "|---|---|---|---|"]
    for i, algorithm in enumerate(data.algorithms, 1):
        params = (
            ", ".join(f"{md(k)}\\={md(repr(v))}" for k, v in algorithm.hyperparameters.items()) or "defaults"
        )
        lines.append(f"| {i} | {md(algorithm.name)} | {md(algorithm.group)} | {params} |")
    return lines


def _format(value: Any, unit: str) -> str:
    if not _number(value):
        return "n/a"
    scaled = float(value) * _SCALE.get(unit, 1.0)
    return f"{scaled:,.3f} {unit}".strip() if abs(scaled) < 1000 else f"{scaled:,.0f} {unit}".strip()


def _benchmark_section(data: CardInput) -> list[str]:
    base, smashed = data.metrics.get("base", {}), data.metrics.get("smashed", {})
    lines = ["## Benchmark: base vs smashed", ""]
    if data.hardware:
        lines.append("Hardware: " + "; ".join(f"{md(k)}: {md(v)}" for k, v in sorted(data.hardware.items())))
    if data.versions:
        lines.append(
            "Library versions: " + ", ".join(f"{md(k)} {md(v)}" for k, v in sorted(data.versions.items()))
        )
    lines += ["", "| metric | base | smashed | smashed / base |", "|---|---|---|---|"]
    for key, (label, unit, _lower) in METRICS.items():
        if key in base or key in smashed:
            b, s = base.get(key), smashed.get(key)
            ratio = f"{float(s) / float(b):.3f}x" if _number(b) and _number(s) and b else "n/a"
            lines.append(f"| {label} | {_format(b, unit)} | {_format(s, unit)} | {ratio} |")
    if data.plot_filename:
        lines += ["", f"![Latency and peak memory against generation length]({data.plot_filename})"]
    return lines


def _quality_section(data: CardInput) -> list[str]:
    lines = ["## Quality against the base", "", f"Measured on the {md(data.dataset_name)}.", ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [
        f"| {label} | {data.quality[k]:.4f} |" for k, label in QUALITY.items() if _number(data.quality.get(k))
    ]
    if data.quality_gate:
        gate = ", ".join(f"{md(k)} {float(v):g}" for k, v in sorted(data.quality_gate.items()))
        lines += ["", f"Quality gate of the recipe (passed before publishing): {gate}."]
    return lines


def _license_section(data: CardInput, header: Mapping[str, Any]) -> list[str]:
    base_link = f"[{data.base_repo_id}]({data.hub_url}/{data.base_repo_id})"
    lines = ["## License", ""]
    if header["license"] == "unknown":
        declared = data.base.license
        detail = (
            f"declares a license this tool does not recognise ({md(declared)})"
            if declared
            else ("declares no license")
        )
        lines.append(
            f"The license is unknown: the card of {base_link} {detail}. "
            "Check the base model's terms before using or redistributing this model."
        )
    elif header["license"] == "other":
        name = header.get("license_name", "a custom license")
        lines.append(f"Same terms as {base_link}: {md(name)}, see [the license]({header['license_link']}).")
    else:
        lines.append(f"Same license as {base_link}: `{header['license']}`.")
    return lines


def _reproducibility_section(data: CardInput) -> list[str]:
    versions = data.versions.get("smash", "unknown")
    return [
        "## Reproducibility",
        "",
        f"- Base model: {data.base_repo_id} at revision `{data.base_revision}`",
        f"- Recipe: {md(data.recipe_name)} version {data.recipe_version}, content hash `{data.recipe_hash}`",
        f"- smash version: {md(versions)}",
        "",
        "SmashConfig (`smash_config.json`):",
        "",
        "```json",
        json.dumps(json.loads(data.smash_config_json), indent=2, sort_keys=True),
        "```",
    ]


def card_body(data: CardInput, header: Mapping[str, Any]) -> str:
    order = " -> ".join(md(a.name) for a in data.algorithms)
    lines = [
        f"# {md(data.repo_id.split('/')[-1])}",
        "",
        f"A smashed copy of [{data.base_repo_id}]({data.hub_url}/{data.base_repo_id}) (revision "
        f"`{data.base_revision[:12]}`), made by pruna-hub with the recipe {md(data.recipe_name)}: {order}.",
        "",
        *_algorithms_section(data),
        "",
        "## How to use",
        "",
        "`pip install pruna-hub`, then:",
        "",
        SNIPPET_START,
        "```python",
        snippet(data.repo_id, data.device),
        "```",
        SNIPPET_END,
        "",
        *_benchmark_section(data),
        "",
        *_quality_section(data),
        "",
        *_license_section(data, header),
        "",
        *_reproducibility_section(data),
    ]
    return "\n".join(lines) + "\n"


def render_card(data: CardInput) -> ModelCard:
    """The full card (YAML header + body); ``str(card)`` is the README.md to publish."""
    data = dataclasses.replace(data, hub_url=data.hub_url.rstrip("/"))
    _check_input(data)
    try:
        json.loads(data.smash_config_json)
    except ValueError as e:
        raise CardError("smash_config_json", data.smash_config_json[:80], f"not JSON ({e})") from e
    header = card_data(data)
    content = f"---\n{header.to_yaml()}\n---\n\n{card_body(data, header.to_dict())}"
    return ModelCard(content)


# --- helpers for the pipeline ----------------------------------------------------------------------------


def applied_algorithms(config: Any, order: Sequence[str]) -> list[AppliedAlgorithm]:
    """From a ``smash.SmashConfig`` and its order (names and groups looked up in the config's registry)."""
    return [
        AppliedAlgorithm(name, config.registry.get(name).group.value, dict(config[name])) for name in order
    ]


def flatten_efficiency(report: Mapping[str, Any]) -> dict[str, float]:
    """``METRICS`` keys from an efficiency report's dict (``EfficiencyReport.to_dict()``)."""
    flat: dict[str, float] = {}
    for key in METRICS:
        head, _, stat = key.partition(".")
        value = report.get(head)
        if stat and isinstance(value, Mapping):
            value = value.get(stat)
        if _number(value):
            flat[key] = float(value)
    return flat


_HARDWARE_KEYS = ("processor", "cpu_count", "threads", "cuda", "platform", "omp_wait_policy")
_VERSION_KEYS = ("smash", "torch", "transformers", "python")


def measurements_from_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """CardInput's metrics, quality, hardware and versions from ``EvaluationReport.to_dict()``.

    Plain-dict based, so the card does not depend on the evaluation classes; unknown or missing values are
    left out rather than guessed.
    """
    environment = report.get("environment") or {}
    quality = report.get("quality") or {}
    return {
        "metrics": {side: flatten_efficiency(report.get(side) or {}) for side in ("base", "smashed")},
        "quality": {k: float(v) for k, v in quality.items() if k in QUALITY and _number(v)},
        "hardware": {k: str(environment[k]) for k in _HARDWARE_KEYS if environment.get(k) is not None},
        "versions": {k: str(environment[k]) for k in _VERSION_KEYS if environment.get(k) is not None},
    }
