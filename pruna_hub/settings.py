"""Service configuration, documented in one place.

Precedence (highest first): command-line flags, environment variables, the config file
(``PRUNA_HUB_CONFIG`` or ``--config``, TOML with the same keys as the fields below), defaults.

| field | environment | default |
|---|---|---|
| hub_endpoint | ``HF_ENDPOINT`` | the huggingface_hub default (https://huggingface.co) |
| token | ``HF_TOKEN`` | none (never printed, logged, stored or written to a card) |
| target_org | ``PRUNA_HUB_TARGET_ORG`` | ``PrunaAI`` |
| authors | ``PRUNA_HUB_AUTHORS`` (comma separated) | all |
| pipeline_tag | ``PRUNA_HUB_PIPELINE_TAG`` | ``text-generation`` |
| library | ``PRUNA_HUB_LIBRARY`` | ``transformers`` |
| search | ``PRUNA_HUB_SEARCH`` | none |
| limit | ``PRUNA_HUB_LIMIT`` | 20 models looked at per run |
| recipe_dirs | ``PRUNA_HUB_RECIPE_DIRS`` (``os.pathsep`` separated) | the shipped recipes only |
| device | ``PRUNA_HUB_DEVICE`` | ``cuda`` when available, else ``cpu`` |
| database_url | ``PRUNA_HUB_DATABASE_URL`` | a SQLite file in the data directory |
| work_dir | ``PRUNA_HUB_WORK_DIR`` | ``<data dir>/work`` |
| max_attempts | ``PRUNA_HUB_MAX_ATTEMPTS`` | 3 |
| max_parameters | ``PRUNA_HUB_MAX_PARAMETERS`` | 8e9 |
| retry_base_seconds | ``PRUNA_HUB_RETRY_BASE_SECONDS`` | 30 (doubled per attempt for transient Hub errors) |
| lease_seconds | ``PRUNA_HUB_LEASE_SECONDS`` | 600 (a dead worker's job is taken over after it) |
| namespace | ``PRUNA_HUB_NAMESPACE`` | ``default`` (the catalogue partition of one organization) |
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pruna_hub.errors import PrunaHubError


class SettingsError(PrunaHubError, ValueError):
    exit_code = 2


def data_dir() -> Path:
    root = os.environ.get("PRUNA_HUB_HOME") or os.path.join(Path.home(), ".local", "share", "pruna_hub")
    return Path(root)


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


def _coerce(name: str, value: Any) -> Any:
    """Turn a string (environment) or TOML value into the field's type, or raise SettingsError."""
    try:
        if name in ("limit", "max_attempts", "max_parameters"):
            number = int(float(value)) if isinstance(value, str) else int(value)
            if number < 1:
                raise ValueError("must be >= 1")
            return number
        if name in ("retry_base_seconds", "lease_seconds"):
            seconds = float(value)
            if seconds < 0:
                raise ValueError("must be >= 0")
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
            raise ValueError("must be a string")
        return value or None
    except (TypeError, ValueError) as e:
        shown = "***" if name == "token" else repr(value)
        raise SettingsError(f"setting {name} = {shown} is not valid ({e}); see pruna_hub/settings.py") from e


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or environ.get("PRUNA_HUB_CONFIG")
    if path:
        values.update(_read_config_file(Path(path)))
    for name, variable in _ENV.items():
        if environ.get(variable):
            values[name] = _coerce(name, environ[variable])
    for name, value in (flags or {}).items():
        if value is not None and value != ():
            values[name] = _coerce(name, value)
    return Settings(**values)


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
