"""`pruna-hub config show`: the effective settings and where each came from, the token never shown.

Thin: loading and precedence are ``pruna_hub.settings.load_settings_with_sources`` (flags > environment
> config file > defaults); this module renders them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from pruna_hub.cli.options import (
    config_option,
    database_url_option,
    device_option,
    format_option,
    recipe_dir_option,
)


@click.group("config")
def config() -> None:
    """Inspect pruna-hub's configuration."""


@config.command("show")
@click.option("--target-org", help="As `sync --target-org`.")
@click.option("--limit", type=int, help="As `sync --limit`.")
@recipe_dir_option
@device_option
@database_url_option
@config_option
@format_option()
def show(
    target_org: str | None,
    limit: int | None,
    recipe_dirs: tuple[Path, ...],
    device: str | None,
    database_url: str | None,
    config_file: Path | None,
    fmt: str,
) -> None:
    """Print every setting, its effective value and its source (default, env VAR, file PATH or flag).

    Takes the flags `sync` takes for settings, so `pruna-hub config show --limit 5` shows what
    `pruna-hub sync --limit 5` would run with. The token is shown as *** when set.
    """
    from pruna_hub.settings import data_dir, load_settings_with_sources

    flags: dict[str, Any] = {"target_org": target_org, "limit": limit, "recipe_dirs": recipe_dirs}
    flags |= {"device": device, "database_url": _flag(database_url, "PRUNA_HUB_DATABASE_URL")}
    settings, sources = load_settings_with_sources(flags, config_file=config_file)
    rows = [(name, _shown(name, getattr(settings, name)), sources[name]) for name in sources]
    rows = [_with_default(row, settings) for row in rows]
    rows.append(("data_dir", str(data_dir()), _data_dir_source()))
    config_path = config_file or os.environ.get("PRUNA_HUB_CONFIG")
    rows.append(("config_file", str(config_path or "-"), "flag" if config_file else _env("PRUNA_HUB_CONFIG")))
    if fmt == "json":
        data = {name: {"value": value, "source": source} for name, value, source in rows}
        click.echo(json.dumps(data, indent=2, default=str))
        return
    widths = [max(len(str(row[i])) for row in rows) for i in range(2)]
    for name, value, source in rows:
        click.echo(f"{name:<{widths[0]}}  {value!s:<{widths[1]}}  {source}")


def _flag(value: str | None, variable: str) -> str | None:
    """click fills --database-url from its variable too: then it is the environment's, not a flag."""
    return None if value is not None and value == os.environ.get(variable) else value


def _shown(name: str, value: Any) -> Any:
    if name == "token":
        return "***" if value else "-"
    if name == "database_url" and value:
        from sqlalchemy.engine import make_url

        try:
            return make_url(value).render_as_string(hide_password=True)
        except Exception:  # an unparsable URL: shown without what could be a password
            return value.split("@")[-1]
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else value


def _with_default(row: tuple[str, Any, str], settings: Any) -> tuple[str, Any, str]:
    """What an unset setting resolves to, so that the table shows what a run would use."""
    name, value, source = row
    if source != "default":
        return row
    if name == "hub_endpoint" and value == "-":
        value = "https://huggingface.co (huggingface_hub's default)"
    elif name == "database_url" and value == "-":
        from registry_db.engine import default_database_url

        value = default_database_url()
    elif name == "work_dir" and value == "-":
        value = str(settings.resolved_work_dir())
    elif name == "device" and value == "-":
        value = "cuda when available, else cpu"
    elif name == "target_org":
        source = "default: set one your token can write to"
    return name, value, source


def _env(variable: str) -> str:
    return f"env {variable}" if os.environ.get(variable) else "default"


def _data_dir_source() -> str:
    for variable in ("PRUNA_HUB_HOME", "XDG_DATA_HOME"):
        if os.environ.get(variable):
            return f"env {variable}"
    return "default"
