"""The options several commands take, defined once: same spelling, same help, same environment variable.

A command stacks the decorators it needs: ``@database_url_option``, ``@local_hub_option``,
``@format_option()``, ``@device_option``, ``@recipe_dir_option``, ``@config_option``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json")

database_url_option = click.option(
    "--database-url",
    envvar="PRUNA_HUB_DATABASE_URL",
    help="Catalogue database (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB). "
    "Default: $PRUNA_HUB_DATABASE_URL, else catalogue.db in the data directory.",
)
namespace_option = click.option(
    "--namespace",
    envvar="PRUNA_HUB_NAMESPACE",
    default="default",
    show_default=True,
    help="Organization whose records to use when several share one database.",
)
local_hub_option = click.option(
    "--local-hub",
    type=click.Path(file_okay=False, path_type=Path),
    help="Use the project's local Hub store in this folder instead of HF_ENDPOINT.",
)
device_option = click.option(
    "--device", type=click.Choice(["cpu", "cuda"]), help="Device to smash on (default: cuda if available)."
)
recipe_dir_option = click.option(
    "--recipe-dir",
    "recipe_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Extra recipe directory (repeatable).",
)
config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML config file (default $PRUNA_HUB_CONFIG).",
)


def format_option(*extra: str, default: str = "table") -> Callable[[F], F]:
    """``--format table|json`` (data to stdout: a table for people, JSON for scripts), plus ``extra``
    choices where a command has more (``catalogue export`` adds csv)."""
    choices = [*FORMATS, *(e for e in extra if e not in FORMATS)]
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output on stdout: " + ", ".join(choices) + ".",
    )


@contextlib.contextmanager
def local_hub_endpoint(root: Path | None) -> Iterator[str | None]:
    """With ``--local-hub DIR``: the project's Hub-compatible store, in-process; yields its endpoint."""
    if root is None:
        yield None
        return
    from pruna_hub.hubstore import LocalHub

    with LocalHub(root).install() as endpoint:
        yield endpoint
