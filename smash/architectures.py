"""Resolve the model class named in a config.json without importing anything the config names, and load
a Hub-style folder as data only.

``config.architectures`` comes from untrusted files, so it is only looked up among the classes that
transformers' own auto mappings list for the config's model type; ``auto_map`` (remote code) is refused.
Weights are read from safetensors only (``use_safetensors=True``: a ``pytorch_model.bin`` beside them is
never unpickled) and tokenizers never run remote code.

config.json's values reach transformers' constructors, which were written for trusted files: the shape
of the JSON is checked first, whatever the constructors still raise becomes an ``ArtifactError`` naming
the file, and the size the config asks for is counted on the ``meta`` device (nothing allocated) and
checked against a budget before the model is built for real.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from torch import nn

from smash.errors import ArtifactError, LoadSettingError, ModelTooLargeError, RemoteCodeError

CONFIG_FILE = "config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILES = ("tokenizer.json", TOKENIZER_CONFIG_FILE, "vocab.json")
MAX_PARAMETERS_ENV = "SMASH_MAX_PARAMETERS"
DEFAULT_MAX_PARAMETERS = 20_000_000_000
MAX_JSON_DEPTH = 64
# Building on the meta device allocates nothing but still creates every module (about 0.1 ms each), so a
# config asking for millions of layers is refused while it is built. Real models hold over 1M parameters
# per module on average (SmolLM2-135M: 0.4M, Qwen3-30B-A3B: 1.2M, DeepSeek-V3: 10M): one module per 400k
# of the parameter budget, and never fewer than MIN_MODULES, leaves room for every one of them.
PARAMETERS_PER_MODULE = 400_000
MIN_MODULES = 10_000
# What transformers' config and model constructors raise on values of the wrong type, sign or size.
CONSTRUCTION_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    ZeroDivisionError,
    OverflowError,
    RecursionError,
    RuntimeError,  # negative or overflowing tensor sizes, and a real allocation the machine cannot serve
    MemoryError,
    StrictDataclassError,
)
# ... and, reading a folder, a file that cannot be opened.
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, *CONSTRUCTION_ERRORS)
_RESAVE = "Re-save the model with save_pretrained, or re-download it."


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:  # iterative: the value may be as deep as the parser allows
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def read_json(path: Path) -> Any:
    """The parsed JSON of one file of a model folder.

    Nesting is capped at ``MAX_JSON_DEPTH`` (real files nest under ten levels): a document just under the
    parser's own limit would otherwise reach code that recurses over it (deepcopy, repr) and fail there.
    """
    too_deep = ArtifactError(
        str(path.parent), f"{path.name} nests its JSON more than {MAX_JSON_DEPTH} levels deep", _RESAVE
    )
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            str(path.parent),
            f"{path.name} is missing",
            "Is this a folder written by PrunaModel.save_pretrained?",
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(str(path.parent), f"{path.name} is not valid JSON ({e})", _RESAVE) from e
    except RecursionError as e:
        raise too_deep from e
    if _deeper_than(data, MAX_JSON_DEPTH):
        raise too_deep
    return data


# --- config.json -----------------------------------------------------------------------------------------


def _names_a_dtype(value: object) -> bool:
    # vars(), not getattr(): torch's module __getattr__ imports submodules by name, and this name is untrusted
    return isinstance(value, str) and isinstance(vars(torch).get(value), torch.dtype)


def _check_dtype(data: dict[str, Any], key: str, location: str) -> None:
    value = data.get(key)
    per_module = isinstance(value, dict) and all(_names_a_dtype(v) for v in value.values())
    if value is not None and not _names_a_dtype(value) and not per_module:
        raise ArtifactError(
            location,
            f"{CONFIG_FILE} {key} {value!r} is not a torch dtype",
            f"Use a dtype name such as 'float32' or 'bfloat16', or remove {key}.",
        )


def check_config_data(data: Any, *, location: str) -> dict[str, Any]:
    """The parts of config.json that transformers would otherwise choke on, or run code for."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not isinstance(data, dict):
        raise ArtifactError(location, f"{CONFIG_FILE} is not a JSON object", _RESAVE)
    if "auto_map" in data:
        raise RemoteCodeError(location, CONFIG_FILE)
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ArtifactError(
            location,
            f"{CONFIG_FILE} model_type {model_type!r} is not a model type transformers ships",
            "Only architectures that transformers ships are supported.",
        )
    for key in ("dtype", "torch_dtype"):
        _check_dtype(data, key, location)
    return data


def read_base_config(path: Path) -> Any:
    """config.json as a transformers config, its JSON checked before any transformers code sees it."""
    from transformers import AutoConfig

    check_config_data(read_json(path / CONFIG_FILE), location=str(path))
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except READ_ERRORS as e:
        raise ArtifactError(str(path), f"{CONFIG_FILE} cannot be read ({_one_line(e)})", _RESAVE) from e


def config_parameters(data: Any, *, location: str, module_limit: int) -> int:
    """Parameters plus buffer elements of the model a config.json mapping describes, counted on the meta
    device (nothing is allocated): what a Hub listing's safetensors summary cannot be trusted to say."""
    from transformers import AutoConfig

    checked = dict(check_config_data(data, location=location))
    model_type = checked.pop("model_type")
    try:
        config = AutoConfig.for_model(model_type, **checked)
    except READ_ERRORS as e:
        raise ArtifactError(location, f"{CONFIG_FILE} cannot be read ({_one_line(e)})", _RESAVE) from e
    model_cls = architecture_class(config, location=location)
    return count_elements(model_cls, config, location=location, module_limit=module_limit)


def _known_classes(model_type: object) -> set[str]:
    from transformers.models.auto import modeling_auto

    names: set[str] = set()
    if not isinstance(model_type, str):
        return names
    for attr in dir(modeling_auto):
        if attr.startswith("MODEL_") and attr.endswith("_MAPPING_NAMES"):
            value = getattr(modeling_auto, attr).get(model_type)
            if isinstance(value, str):
                names.add(value)
            elif isinstance(value, tuple | list):
                names.update(v for v in value if isinstance(v, str))
    return names


def architecture_class(config: Any, *, location: str) -> type[Any]:
    import transformers

    if getattr(config, "auto_map", None):
        raise RemoteCodeError(location, CONFIG_FILE)
    architectures = getattr(config, "architectures", None) or []
    model_type = getattr(config, "model_type", "")
    known = _known_classes(model_type)
    for name in architectures if isinstance(architectures, list | tuple) else []:
        if isinstance(name, str) and name in known:
            return getattr(transformers, name)
    raise ArtifactError(
        location,
        f"architectures {architectures!r} are not transformers classes for model_type {model_type!r}",
        "Only architectures that transformers ships are supported.",
    )


# --- size budget -----------------------------------------------------------------------------------------


def parameter_budget() -> int:
    """The most parameters (and buffer elements) a loaded config may ask for: ``SMASH_MAX_PARAMETERS``."""
    raw = os.environ.get(MAX_PARAMETERS_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_PARAMETERS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 1 <= value < 1e18:  # also False for nan and inf
        raise LoadSettingError(MAX_PARAMETERS_ENV, raw, "a number of parameters such as 20e9")
    return int(value)


class _TooManyModules(Exception):
    pass


@contextmanager
def _module_limit(limit: int) -> Iterator[None]:
    """Abort a model construction in this thread once it has registered ``limit`` submodules."""
    builder, count = threading.get_ident(), 0

    def hook(parent: nn.Module, name: str, module: nn.Module | None) -> None:
        nonlocal count
        if threading.get_ident() == builder:
            count += 1
            if count > limit:
                raise _TooManyModules

    handle = nn.modules.module.register_module_module_registration_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def count_elements(model_cls: type[Any], config: Any, *, location: str, module_limit: int) -> int:
    """Parameters plus buffer elements of the model ``config`` describes, built on ``meta``."""
    from transformers.initialization import no_init_weights

    try:
        with torch.device("meta"), no_init_weights(), _module_limit(module_limit):
            skeleton = model_cls._from_config(config)
            tie_weights = getattr(skeleton, "tie_weights", None)
            if callable(tie_weights):  # as the load does: a tied head is counted once
                tie_weights()
    except _TooManyModules:
        raise ModelTooLargeError(
            location,
            unit="modules",
            count=module_limit + 1,
            limit=module_limit,
            at_least=True,
            hint=f"Real models hold far fewer modules for their size; if this one is genuine, raise "
            f"{MAX_PARAMETERS_ENV} (the module limit grows with it).",
        ) from None
    except CONSTRUCTION_ERRORS as e:
        raise ArtifactError(
            location,
            f"{CONFIG_FILE} does not describe a buildable {model_cls.__name__} ({_one_line(e)})",
            _RESAVE,
        ) from e
    return sum(t.numel() for t in chain(skeleton.parameters(), skeleton.buffers()))


def check_size_budget(model_cls: type[Any], config: Any, *, location: str) -> int:
    """Refuse a config whose model exceeds the budget before any of it is allocated; returns the count."""
    limit = parameter_budget()
    modules = max(MIN_MODULES, limit // PARAMETERS_PER_MODULE)
    count = count_elements(model_cls, config, location=location, module_limit=modules)
    if count > limit:
        raise ModelTooLargeError(
            location,
            unit="parameters",
            count=count,
            limit=limit,
            hint=f"If the model is genuine and fits this machine, raise the limit with {MAX_PARAMETERS_ENV}.",
        )
    return count


# --- loading ---------------------------------------------------------------------------------------------


def load_pretrained(path: Path, *, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer or None) from a Hub-style folder: transformers' own classes, safetensors only."""
    config = read_base_config(path)
    model_cls = architecture_class(config, location=str(path))
    check_size_budget(model_cls, config, location=str(path))
    try:
        model = model_cls.from_pretrained(path, trust_remote_code=False, use_safetensors=True)
    except READ_ERRORS as e:
        raise ArtifactError(str(path), f"the model cannot be loaded ({_one_line(e)})", _RESAVE) from e
    return model.eval().to(device), load_tokenizer(path)


def load_tokenizer(path: Path) -> Any:
    """The folder's tokenizer, or None when it has none; never remote code."""
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    if (path / TOKENIZER_CONFIG_FILE).is_file():
        tokenizer_config = read_json(path / TOKENIZER_CONFIG_FILE)
        if not isinstance(tokenizer_config, dict):
            raise ArtifactError(str(path), f"{TOKENIZER_CONFIG_FILE} is not a JSON object", _RESAVE)
        if "auto_map" in tokenizer_config:
            raise RemoteCodeError(str(path), TOKENIZER_CONFIG_FILE)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except READ_ERRORS as e:
        raise ArtifactError(
            str(path), f"the tokenizer files cannot be loaded ({_one_line(e)})", _RESAVE
        ) from e
