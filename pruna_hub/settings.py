"""Service configuration, documented in one place (README.md's "Configuration" section has the same table;
``tests/test_docs.py`` fails when the code reads an environment variable that README.md does not list).

Precedence (highest first): command-line flags, environment variables, the config file
(``PRUNA_HUB_CONFIG`` or ``--config``, TOML with the same keys as the fields below), defaults.
``pruna-hub config show`` prints the effective settings and where each came from. Invalid values are a
``SettingsError`` naming the setting, the value and what is allowed (exit code 2).

| field | environment | default | allowed |
|---|---|---|---|
| hub_endpoint | ``HF_ENDPOINT`` | the huggingface_hub default (https://huggingface.co) | a URL |
| token | ``HF_TOKEN`` | none (never printed, logged, stored or written to a card) | not in a config file |
| target_org | ``PRUNA_HUB_TARGET_ORG`` | ``PrunaAI``: set it to an org your token can write to | |
| authors | ``PRUNA_HUB_AUTHORS`` (comma separated) | all | |
| pipeline_tag | ``PRUNA_HUB_PIPELINE_TAG`` | ``text-generation`` | |
| library | ``PRUNA_HUB_LIBRARY`` | ``transformers`` | |
| search | ``PRUNA_HUB_SEARCH`` | none | |
| limit | ``PRUNA_HUB_LIMIT`` | 20 models looked at per run | a whole number >= 1 |
| recipe_dirs | ``PRUNA_HUB_RECIPE_DIRS`` (``os.pathsep`` separated) | the shipped recipes only | |
| device | ``PRUNA_HUB_DEVICE`` | ``cuda`` when available, else ``cpu`` | cpu, cuda |
| database_url | ``PRUNA_HUB_DATABASE_URL`` | ``catalogue.db`` in the data dir | sqlite or postgresql URL |
| work_dir | ``PRUNA_HUB_WORK_DIR`` | ``<data dir>/work`` | |
| max_attempts | ``PRUNA_HUB_MAX_ATTEMPTS`` | 3 | a whole number >= 1 |
| max_parameters | ``PRUNA_HUB_MAX_PARAMETERS`` | 8e9 | a whole number >= 1 |
| retry_base_seconds | ``PRUNA_HUB_RETRY_BASE_SECONDS`` | 30 (doubled per attempt) | finite, >= 0 |
| lease_seconds | ``PRUNA_HUB_LEASE_SECONDS`` | 600 (a dead worker's job is taken after it) | finite, >= 1 |
| namespace | ``PRUNA_HUB_NAMESPACE`` | ``default`` (the catalogue partition of one organization) | |

Not settings but read from the environment as well: ``PRUNA_HUB_CONFIG`` (the config file),
``PRUNA_HUB_HOME`` (the data directory; else ``$XDG_DATA_HOME/pruna_hub``, else
``~/.local/share/pruna_hub``: ``data_dir``), ``PRUNA_HUB_CACHE``, ``PRUNA_HUB_DEBUG``,
``PRUNA_HUB_LOG_FORMAT``, ``SMASH_COMPILE_CACHE``, ``SMASH_COMPILE_CACHE_DIR``, ``HF_HUB_DISABLE_XET``,
``OMP_WAIT_POLICY``, ``RAY_ADDRESS``, ``XDG_DATA_HOME``: README.md's table says what each does.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pruna_hub.errors import PrunaHubError


class SettingsError(PrunaHubError, ValueError):
    """A setting that cannot be used; ``setting``, ``value`` and ``allowed`` say which, what and why."""

    exit_code = 2

    def __init__(
        self, message: str, *, setting: str | None = None, value: Any = None, allowed: str | None = None
    ) -> None:
        super().__init__(message)
        self.setting, self.value, self.allowed = setting, value, allowed


def data_dir() -> Path:
    """pruna-hub's data directory: ``$PRUNA_HUB_HOME``, else ``$XDG_DATA_HOME/pruna_hub``, else
    ``~/.local/share/pruna_hub``. One definition, the catalogue's (``registry_db.engine.data_dir``), so the
    catalogue, the work folders and the recipe timings always live side by side."""
    from registry_db.engine import data_dir as catalogue_data_dir

    return catalogue_data_dir()


@dataclass(frozen=True)
class Settings:
    hub_endpoint: str | None = None
    token: str | None = field(default=None, repr=False)
    target_org: str = "PrunaAI"
    authors: tuple[str, ...] = ()
    pipeline_tag: str | None = "text-generation"
    library: str | None = "transformers"
    search: str | None = None
    limit: int = 20
    recipe_dirs: tuple[Path, ...] = ()
    device: str | None = None
    database_url: str | None = None
    work_dir: Path | None = None
    max_attempts: int = 3
    max_parameters: int = 8_000_000_000
    namespace: str = "default"
    retry_base_seconds: float = 30.0
    lease_seconds: float = 600.0

    def __post_init__(self) -> None:  # built directly (not through load_settings): the same checks
        for name in (*_WHOLE, *_SECONDS):
            _coerce(name, getattr(self, name))

    def resolved_work_dir(self) -> Path:
        return self.work_dir or data_dir() / "work"

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


_ENV = {
    "hub_endpoint": "HF_ENDPOINT",
    "token": "HF_TOKEN",
    "target_org": "PRUNA_HUB_TARGET_ORG",
    "authors": "PRUNA_HUB_AUTHORS",
    "pipeline_tag": "PRUNA_HUB_PIPELINE_TAG",
    "library": "PRUNA_HUB_LIBRARY",
    "search": "PRUNA_HUB_SEARCH",
    "limit": "PRUNA_HUB_LIMIT",
    "recipe_dirs": "PRUNA_HUB_RECIPE_DIRS",
    "device": "PRUNA_HUB_DEVICE",
    "database_url": "PRUNA_HUB_DATABASE_URL",
    "work_dir": "PRUNA_HUB_WORK_DIR",
    "max_attempts": "PRUNA_HUB_MAX_ATTEMPTS",
    "max_parameters": "PRUNA_HUB_MAX_PARAMETERS",
    "namespace": "PRUNA_HUB_NAMESPACE",
    "retry_base_seconds": "PRUNA_HUB_RETRY_BASE_SECONDS",
    "lease_seconds": "PRUNA_HUB_LEASE_SECONDS",
}


_WHOLE = ("limit", "max_attempts", "max_parameters")
_SECONDS = {"retry_base_seconds": 0.0, "lease_seconds": 1.0}  # field -> smallest allowed value
DEVICES = ("cpu", "cuda")


def _invalid(name: str, value: Any, allowed: str) -> SettingsError:
    shown = "***" if name == "token" else repr(value)
    where = f" (environment {_ENV[name]})" if name in _ENV else ""
    return SettingsError(
        f"setting {name}{where} = {shown} is not valid: {allowed} "
        "(the settings table: README.md, Configuration)",
        setting=name,
        value=None if name == "token" else value,
        allowed=allowed,
    )


def _number(name: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool):
        raise _invalid(name, value, allowed)
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        raise _invalid(name, value, allowed) from e
    if not math.isfinite(number):
        raise _invalid(name, value, allowed)
    return number


def _coerce(name: str, value: Any) -> Any:
    """Turn a string (environment) or TOML value into the field's type, or raise SettingsError."""
    if name in _WHOLE:
        allowed = "a whole number >= 1"
        number = _number(name, value, allowed)
        if number < 1 or not number.is_integer():
            raise _invalid(name, value, allowed)
        return int(number)
    if name in _SECONDS:
        least = _SECONDS[name]
        allowed = f"a finite number of seconds >= {least:g}"
        seconds = _number(name, value, allowed)
        if seconds < least:
            raise _invalid(name, value, allowed)
        return seconds
    if name == "authors":
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(a.strip() for a in items if a.strip())
    if name == "recipe_dirs":
        items = value.split(os.pathsep) if isinstance(value, str) else list(value)
        return tuple(Path(p) for p in items if p)
    if name == "work_dir":
        return Path(value)
    if not isinstance(value, str):
        raise _invalid(name, value, "a string")
    if name == "device" and value and value not in DEVICES:
        raise _invalid(name, value, "cpu or cuda")
    return value or None


Source = str  # "default", "env VAR", "file PATH" or "flag"


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    return load_settings_with_sources(flags, config_file=config_file, environ=environ)[0]


def load_settings_with_sources(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings, dict[str, Source]]:
    """The settings and, per field, where its value came from (for `pruna-hub config show`)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {f.name: "default" for f in dataclasses.fields(Settings)}
    path = config_file or environ.get("PRUNA_HUB_CONFIG")
    if path:
        for name, value in _read_config_file(Path(path)).items():
            values[name], sources[name] = value, f"file {path}"
    for name, variable in _ENV.items():
        if environ.get(variable):
            values[name], sources[name] = _coerce(name, environ[variable]), f"env {variable}"
    for name, value in (flags or {}).items():
        if value is not None and value != ():
            values[name], sources[name] = _coerce(name, value), "flag"
    return Settings(**values), sources


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SettingsError(f"config file {path} cannot be read: {e}") from e
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if "token" in data:
        raise SettingsError(f"config file {path}: do not store the token in a file; set HF_TOKEN instead")
    return {name: _coerce(name, value) for name, value in data.items()}
