"""The `pruna-hub` command line: parse, call a service, render. Errors become messages here, at the edge.

Each command group lives in its own module and is listed in ``_COMMANDS`` (loaded lazily so that
`pruna-hub --help` does not import torch).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

# command name -> "module:attribute"
_COMMANDS: dict[str, str] = {
    "recipes": "pruna_hub.cli.recipes:recipes",
    "bench": "pruna_hub.cli.bench:bench",
    "hub": "pruna_hub.cli.hub:hub",
    "db": "pruna_hub.cli.db:db",
    "catalogue": "pruna_hub.cli.catalogue:catalogue",
    "jobs": "pruna_hub.cli.jobs:jobs",
    "sync": "pruna_hub.cli.sync:sync",
    "seed": "pruna_hub.cli.seed:seed",
    "worker": "pruna_hub.cli.sync:worker",
    "ui": "pruna_hub.cli.ui:ui",
    "config": "pruna_hub.cli.config:config",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module, attribute = _COMMANDS[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="PRUNA_HUB_DEBUG", help="Show tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More messages (repeatable: -vv also other libraries').")
@click.option("-q", "--quiet", count=True, help="Fewer messages: -q warnings and errors only, -qq errors.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="PRUNA_HUB_LOG_FORMAT",
    show_default=True,
    help="Messages on stderr as text, or JSON lines (timestamp, level, logger, message).",
)
@click.version_option(package_name="pruna-hub")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int, quiet: int, log_format: str) -> None:
    """Keep a model hub stocked with smashed copies of new models.

    Data goes to stdout (--format json on a command for scripts), messages to stderr.
    """
    from pruna_hub.cli.logs import configure_logging

    configure_logging(verbose - quiet, log_format)
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: every error becomes one line on stderr and the exit code its class owns
    (``pruna_hub.errors.ExitCode``); ``--debug`` (or PRUNA_HUB_DEBUG=1) shows the traceback instead."""
    from pruna_hub.errors import ExitCode, PrunaHubError
    from registry_db.errors import CatalogueError

    args = argv if argv is not None else sys.argv[1:]
    debug = "--debug" in args or os.environ.get("PRUNA_HUB_DEBUG", "").lower() in ("1", "true", "yes")
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (PrunaHubError, CatalogueError, ValueError, OSError) as e:
        if debug:
            raise
        _show_error(_one_line(e))
        sys.exit(int(getattr(e, "exit_code", ExitCode.ERROR)))


def _show_error(text: str) -> None:
    """One line on stderr: ``error: ...``, or with ``--log-format json`` a JSON record like every other
    message, so that a log collector parses every line."""
    from pruna_hub.cli.logs import json_logging

    if json_logging():
        import logging

        logging.getLogger("pruna_hub.cli").error(text)
    else:
        click.echo(f"error: {text}", err=True)


def _one_line(error: BaseException) -> str:
    """The message of an error; an OSError that says nothing of what to do gets a pointer to --debug."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and not hasattr(error, "exit_code"):
        text = f"{text} ({type(error).__name__}; run with --debug for the traceback)"
    return text
