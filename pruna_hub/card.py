"""The model card of a published smashed model, built with huggingface_hub's ModelCard / ModelCardData.

The input is plain data (``CardInput``), so this module depends on neither the evaluation classes nor the
catalogue. Text that comes from the base model's card is untrusted:

- Into the YAML header only values that match a strict pattern or a known list go: license ids from the
  Hub's list, ``license_name`` as a lowercase slug, ``license_link`` as a plain https URL or a relative
  path (made absolute on the base repo at the pinned revision), pipeline tags from a known list, tags and
  language codes matching safe patterns. Everything else is dropped, never quoted through.
- In the body, every string from outside is shown as an inline code span (``code``: newlines flattened,
  a backtick fence longer than any run of backticks inside, ``|`` escaped in table cells), so it cannot
  open links, HTML, emphasis, code fences or table cells, and reads as written: no backslash escapes.
  Our own text (repo ids, which ``validate_repo_id`` limits to ``[A-Za-z0-9._-]`` and ``/``) stays plain.
  The body is rendered through huggingface_hub's ``ModelCard.from_template`` (``CARD_TEMPLATE``).

Links are root-relative (``/org/name``): the Hub that shows the card resolves them on itself, so they point
at the Hub the repo lives on, never at the endpoint the service happened to upload through (an in-process
``http://hub.local`` or a loopback port). The header's ``license_link`` is made absolute on ``hub_url``,
since the Hub resolves a relative one inside this repo, not the base's.

Numbers: "Size on disk" of the smashed model is the sum of the files published in the commit
(``published_files``, the card included) when the caller gives them, else what the evaluation measured
on the saved model folder (and the row says so). A negative "memory per generated token" (a slope of peak
memory against generation length below the noise of the allocator) is shown as ~0 with the measured value
and a note, never as a negative cost.

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
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
_BACKTICKS = re.compile(r"`+")

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
_SCALE = {"ms": 1e3, "GB": 1e-9, "MB": 1e-6, "KB": 1e-3, "B": 1.0, "tokens/s": 1.0, "": 1.0}
_BYTE_UNITS = (("GB", 1e9), ("MB", 1e6), ("KB", 1e3))


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
    published_files: Mapping[str, int] = field(default_factory=dict)  # path -> bytes, without README.md


# --- sanitising ------------------------------------------------------------------------------------------


def code(value: object, *, cell: bool = False) -> str:
    """Untrusted text as one inline code span: shown literally, never Markdown or HTML (``cell``: inside
    a table, where GFM splits on any unescaped ``|``, code spans included)."""
    text = " ".join(str(value).split()) or "-"
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if cell else span


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
    lines = ["| # | algorithm | group | hyperparameters |", "|---|---|---|---|"]
    for i, algorithm in enumerate(data.algorithms, 1):
        params = (
            ", ".join(code(f"{k}={v!r}", cell=True) for k, v in algorithm.hyperparameters.items())
            or "defaults"
        )
        lines.append(
            f"| {i} | {code(algorithm.name, cell=True)} | {code(algorithm.group, cell=True)} | {params} |"
        )
    return lines


def _format(value: Any, unit: str) -> str:
    if not _number(value):
        return "n/a"
    scaled = float(value) * _SCALE.get(unit, 1.0)
    if unit == "":
        return f"{scaled:,.0f}" if scaled == int(scaled) else f"{scaled:,.3f}"
    return f"{scaled:,.3f} {unit}" if abs(scaled) < 1000 else f"{scaled:,.0f} {unit}"


def _row_unit(unit: str, *values: Any) -> str:
    """Byte metrics (declared GB or MB) in the unit that fits the row's largest value: a small model's
    peak memory reads 506.176 KB, not 0.001 GB."""
    if unit not in ("GB", "MB"):
        return unit
    largest = max((abs(float(v)) for v in values if _number(v)), default=0.0)
    return next((name for name, size in _BYTE_UNITS if largest >= size), "KB" if largest else unit)


def _memory_per_token(value: Any, unit: str) -> str:
    """A negative slope is noise (the allocator's peak moved less than its granularity): shown as ~0."""
    if _number(value) and value < 0:
        return f"~0 {unit} (measured {float(value) * _SCALE[unit]:,.3f} {unit}, see note)"
    return _format(value, unit)


def _ratio(b: Any, s: Any) -> str:
    if not (_number(b) and _number(s)) or b <= 0 or s < 0:
        return "n/a"
    return f"{float(s) / float(b):.3f}x"


def published_size(data: CardInput, card_bytes: int) -> int | None:
    """Bytes of the commit: the published files plus this card (``None`` when the caller gave no files)."""
    if not data.published_files:
        return None
    return sum(int(v) for k, v in data.published_files.items() if k != "README.md") + card_bytes


def _benchmark_rows(data: CardInput, card_bytes: int) -> tuple[list[str], list[str]]:
    """The table rows and the notes they need."""
    base, smashed = dict(data.metrics.get("base", {})), dict(data.metrics.get("smashed", {}))
    notes: list[str] = []
    published = published_size(data, card_bytes)
    if published is not None:
        smashed["disk_bytes"] = published
        notes.append(
            "Size on disk: for the smashed model, the files of this repo's commit (weights, configs, "
            "tokenizer, this card, the benchmark JSON and plot); for the base, the files downloaded to "
            "load it."
        )
    elif "disk_bytes" in smashed:
        notes.append("Size on disk: the saved model folder as measured, before the card and benchmark files.")
    rows = []
    for key, (label, unit, _lower) in METRICS.items():
        if key not in base and key not in smashed:
            continue
        b, s = base.get(key), smashed.get(key)
        if key == "memory_per_token_bytes":
            unit = _row_unit(unit, b, s)
            cells = [_memory_per_token(b, unit), _memory_per_token(s, unit), _ratio(b, s)]
            if any(_number(v) and v < 0 for v in (b, s)):
                notes.append(
                    "Memory per generated token: the slope of peak memory against generation length. A "
                    "negative slope means peak memory did not grow measurably with length (it varied "
                    "less than the allocator's granularity between runs); it is shown as ~0."
                )
        else:
            unit = _row_unit(unit, b, s)
            cells = [_format(b, unit), _format(s, unit), _ratio(b, s)]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows, notes


def _license_text(data: CardInput, header: Mapping[str, Any]) -> str:
    base_link = f"[{data.base_repo_id}](/{data.base_repo_id})"
    if header["license"] == "unknown":
        declared = data.base.license
        detail = (
            f"declares a license this tool does not recognise ({code(declared)})"
            if declared
            else "declares no license"
        )
        return (
            f"The license is unknown: the card of {base_link} {detail}. "
            "Check the base model's terms before using or redistributing this model."
        )
    if header["license"] == "other":
        name = code(header["license_name"]) if "license_name" in header else "a custom license"
        return f"Same terms as {base_link}: {name}, see [the license]({header['license_link']})."
    return f"Same license as {base_link}: `{header['license']}`."


def install_text(data: CardInput) -> str:
    """How to get the ``smash`` module the snippet imports. It is not on PyPI: the ``smash`` package there
    is an unrelated project, and no ``pruna-hub`` distribution is published."""
    version = data.versions.get("smash") or "0.1.0"
    wheel = f"pruna_hub-{version}-py3-none-any.whl"
    if not re.fullmatch(r"[0-9A-Za-z.+-]{1,40}", version):
        wheel = "pruna_hub-VERSION-py3-none-any.whl"
    return (
        "The loader is the `smash` module of pruna-hub, which is not published on PyPI (`pip install smash` "
        "installs an unrelated package; `pip install pruna-hub` finds nothing). Install pruna-hub from its "
        "source repository: in a checkout, `pip install .`; or build a wheel there once "
        f"(`pip wheel --no-deps -w dist .`) and install it anywhere with `pip install dist/{wheel}`. Then:"
    )


CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A smashed copy of [{{ base_repo_id }}](/{{ base_repo_id }}) (revision `{{ base_revision_short }}`), made by \
pruna-hub with the recipe {{ recipe }}: {{ order }}.

## What was done

{{ algorithms }}

## How to use

{{ install }}

{{ snippet_start }}
```python
{{ snippet }}
```
{{ snippet_end }}

## Benchmark: base vs smashed
{% if hardware %}
- Hardware: {{ hardware }}{% endif %}{% if versions %}
- Library versions: {{ versions }}{% endif %}

| metric | base | smashed | smashed / base |
|---|---|---|---|
{{ benchmark_rows }}
{% for note in notes %}
- {{ note }}{% endfor %}
{% if plot %}
![Latency and peak memory against generation length]({{ plot }})
{% endif %}
## Quality against the base

Measured on the {{ dataset }}.

| metric | value |
|---|---|
{{ quality_rows }}
{% if gate %}
Quality gate of the recipe (passed before publishing): {{ gate }}.
{% endif %}
## License

{{ license_text }}

## Reproducibility

- Base model: [{{ base_repo_id }}](/{{ base_repo_id }}) at revision `{{ base_revision }}`
- Recipe: {{ recipe }} version {{ recipe_version }}, content hash `{{ recipe_hash }}`
- smash version: {{ smash_version }}

SmashConfig (`smash_config.json`):

```json
{{ smash_config }}
```
"""


def _template_values(data: CardInput, header: Mapping[str, Any], card_bytes: int) -> dict[str, Any]:
    rows, notes = _benchmark_rows(data, card_bytes)
    quality = [
        f"| {label} | {data.quality[k]:.4f} |" for k, label in QUALITY.items() if _number(data.quality.get(k))
    ]
    return {
        "title": data.repo_id.split("/")[-1],
        "base_repo_id": data.base_repo_id,
        "base_revision": data.base_revision,
        "base_revision_short": data.base_revision[:12],
        "recipe": code(data.recipe_name),
        "order": " -> ".join(code(a.name) for a in data.algorithms),
        "algorithms": "\n".join(_algorithms_section(data)),
        "install": install_text(data),
        "snippet_start": SNIPPET_START,
        "snippet": snippet(data.repo_id, data.device),
        "snippet_end": SNIPPET_END,
        "hardware": "; ".join(code(f"{k}: {v}") for k, v in sorted(data.hardware.items())),
        "versions": ", ".join(code(f"{k} {v}") for k, v in sorted(data.versions.items())),
        "benchmark_rows": "\n".join(rows),
        "notes": notes,
        "plot": data.plot_filename,
        "dataset": code(data.dataset_name),
        "quality_rows": "\n".join(quality),
        "gate": ", ".join(code(f"{k} {float(v):g}") for k, v in sorted(data.quality_gate.items())),
        "license_text": _license_text(data, header),
        "recipe_version": data.recipe_version,
        "recipe_hash": data.recipe_hash,
        "smash_version": code(data.versions.get("smash", "unknown")),
        "smash_config": json.dumps(json.loads(data.smash_config_json), indent=2, sort_keys=True),
    }


def render_card(data: CardInput) -> ModelCard:
    """The full card (YAML header + body); ``str(card)`` is the README.md to publish.

    With ``published_files``, "Size on disk" includes the card itself: rendered until its own length
    stops changing (twice at most, in practice)."""
    data = dataclasses.replace(data, hub_url=data.hub_url.rstrip("/"))
    _check_input(data)
    try:
        json.loads(data.smash_config_json)
    except ValueError as e:
        raise CardError("smash_config_json", data.smash_config_json[:80], f"not JSON ({e})") from e
    header = card_data(data)
    card_bytes = 0
    for _ in range(5):
        values = _template_values(data, header.to_dict(), card_bytes)
        card = ModelCard.from_template(header, template_str=CARD_TEMPLATE, **values)
        size = len(str(card).encode())
        if size == card_bytes or not data.published_files:
            break
        card_bytes = size
    return card


def folder_files(folder: str | os.PathLike[str]) -> dict[str, int]:
    """``published_files`` for ``CardInput``: every file under ``folder`` (the artifact about to be
    committed) but the card, by its path in the repo."""
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != "README.md"
    }


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
