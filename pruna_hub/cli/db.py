"""`pruna-hub db upgrade|current`: migrate the catalogue database and see where it stands.

Thin: the migration runner and its checks live in ``registry_db.migrate``. Every command that opens the
catalogue refuses a database behind the code and names ``pruna-hub db upgrade``; this is that command.
"""

from __future__ import annotations

import json

import click

from pruna_hub.cli.options import database_url_option, format_option, namespace_option

__all__ = ["database_url_option", "db", "namespace_option"]  # the shared options, also importable from here


@click.group("db")
def db() -> None:
    """Create, inspect and migrate the catalogue database."""


@db.command("upgrade")
@database_url_option
@click.option("--revision", default="head", show_default=True, help="Target schema revision.")
@format_option()
def upgrade_command(database_url: str | None, revision: str, fmt: str) -> None:
    """Migrate the catalogue to this code's schema (safe to run from several processes at once)."""
    from registry_db.engine import create_catalogue_engine
    from registry_db.migrate import upgrade

    engine = create_catalogue_engine(database_url)
    try:
        before, after = upgrade(engine, revision)
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps({"before": before.to_dict(), "after": after.to_dict()}, indent=2))
    elif before.current == after.current:
        click.echo(f"{after.url}: already at revision {after.current} (head {after.head})")
    else:
        click.echo(f"{after.url}: upgraded from {before.current or 'empty'} to {after.current}")


@db.command("current")
@database_url_option
@format_option()
def current_command(database_url: str | None, fmt: str) -> None:
    """Show the database's schema revision against this code's head (changes nothing)."""
    from registry_db.engine import create_catalogue_engine
    from registry_db.migrate import SchemaState, schema_status

    engine = create_catalogue_engine(database_url, read_only=True)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(status.to_dict(), indent=2))
        return
    advice = {
        SchemaState.CURRENT: "up to date",
        SchemaState.EMPTY: "empty: created at head on first use, or run `pruna-hub db upgrade`",
        SchemaState.BEHIND: "behind: run `pruna-hub db upgrade`",
        SchemaState.AHEAD: "ahead: written by a newer pruna-hub; upgrade pruna-hub",
        SchemaState.UNMANAGED: "not a pruna-hub catalogue",
    }[status.state]
    lines = [
        ("database", status.url),
        ("revision", status.current or "-"),
        ("head", status.head),
        ("state", advice),
    ]
    click.echo("\n".join(f"{key:<10}{value}" for key, value in lines))
