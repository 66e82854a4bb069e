"""Alembic environment of the catalogue.

Run from code (``registry_db.migrate``), which hands over an open connection in
``config.attributes["connection"]``; run by the ``alembic`` command (``alembic -c migrations/alembic.ini``)
it connects to ``sqlalchemy.url`` or ``PRUNA_HUB_DATABASE_URL``. SQLite gets ``render_as_batch`` because
it cannot ALTER most things in place.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from registry_db.engine import create_catalogue_engine
from registry_db.migrate import set_sqlite_foreign_keys
from registry_db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url is not None and url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_catalogue_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Batch mode rebuilds tables; enforced foreign keys would cascade-delete children on the drop.
            set_sqlite_foreign_keys(connection, on=False)
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
