"""Running the Alembic migrations in ``migrations/`` from code, and checking a database against them.

The scripts are found through the ``migrations`` package itself, so this works the same from a checkout,
an editable install and an installed wheel. The rules a database is held to when opened:

- empty: created at head (under the migration lock), nothing to run by hand;
- at head: used;
- behind head: refused with a message naming ``pruna-hub db upgrade`` (migrating a shared catalogue is a
  decision, not a side effect of running a command);
- ahead of the code (a revision this code does not know): refused with its own message;
- tables but no ``alembic_version``: refused, it is someone else's database.

Two processes migrating at once are serialized: a PostgreSQL advisory lock, or a file lock next to the
SQLite file. The state is re-read once the lock is held, so the second process finds nothing to do.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from registry_db.engine import redact, write_engine
from registry_db.errors import (
    CatalogueValueError,
    DatabaseUnreachableError,
    SchemaAheadError,
    SchemaBehindError,
    UnmanagedDatabaseError,
)

VERSION_TABLE = "alembic_version"
# Any fixed 64-bit number works; derived from a name so that it is recognisable in pg_locks.
_ADVISORY_LOCK_KEY = zlib.crc32(b"pruna_hub.migrations")
_LOCK_TIMEOUT_S = 300.0


class SchemaState(enum.StrEnum):
    EMPTY = "empty"
    CURRENT = "current"
    BEHIND = "behind"
    AHEAD = "ahead"
    UNMANAGED = "unmanaged"


@dataclass(frozen=True)
class SchemaStatus:
    url: str
    current: str | None
    head: str
    state: SchemaState

    def to_dict(self) -> dict[str, str | None]:
        return {"url": self.url, "current": self.current, "head": self.head, "state": self.state.value}


def migrations_dir() -> Path:
    """The folder of the ``migrations`` package (a namespace package in stale editable installs)."""
    import migrations

    for entry in migrations.__path__:
        if (Path(entry) / "env.py").is_file():
            return Path(entry).resolve()
    raise RuntimeError(
        f"the migrations package ({list(migrations.__path__)}) holds no env.py; reinstall pruna-hub"
    )


def alembic_config(engine: Engine | None = None) -> Config:
    """A Config pointing at the shipped scripts; no alembic.ini is needed."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if engine is not None:
        url = engine.url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    """The shipped scripts, parsed once per process (they cannot change under a running program)."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError(f"no migration scripts found in {migrations_dir()}")
    return head


def schema_status(engine: Engine) -> SchemaStatus:
    """Where the database stands against this code's migrations. Connects, so it may raise unreachable."""
    try:
        with engine.connect() as connection:
            return _status(connection, redact(engine.url))
    except DBAPIError as e:
        raise DatabaseUnreachableError(redact(engine.url), _first_line(e)) from e


def _status(connection: Connection, url: str) -> SchemaStatus:
    head = head_revision()
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        tables = [t for t in inspect(connection).get_table_names() if t != VERSION_TABLE]
        if tables:
            raise UnmanagedDatabaseError(url, head, tables)
        return SchemaStatus(url, None, head, SchemaState.EMPTY)
    if current == head:
        return SchemaStatus(url, current, head, SchemaState.CURRENT)
    known = {script.revision for script in script_directory().walk_revisions()}
    state = SchemaState.BEHIND if current in known else SchemaState.AHEAD
    return SchemaStatus(url, current, head, state)


def ensure_schema(engine: Engine, *, create: bool = True) -> SchemaStatus:
    """Check the database before use; create an empty one at head. Raises the Schema*Error of its state."""
    status = schema_status(engine)
    if status.state is SchemaState.EMPTY and create:
        with migration_lock(engine):
            status = schema_status(engine)
            if status.state is SchemaState.EMPTY:
                _run_upgrade(engine, "head")
                status = schema_status(engine)
    _raise_for(status)
    return status


def _raise_for(status: SchemaStatus) -> None:
    if status.state is SchemaState.BEHIND:
        raise SchemaBehindError(status.url, status.current, status.head)
    if status.state is SchemaState.AHEAD:
        raise SchemaAheadError(status.url, status.current, status.head)


def upgrade(engine: Engine, revision: str = "head") -> tuple[SchemaStatus, SchemaStatus]:
    """Migrate to ``revision`` (``pruna-hub db upgrade``); returns the status before and after.

    A database ahead of this code is refused rather than "upgraded" to an older head.
    """
    with migration_lock(engine):
        before = schema_status(engine)
        if before.state is SchemaState.AHEAD:
            _raise_for(before)
        if before.current != revision:
            _run_upgrade(engine, revision)
        return before, schema_status(engine)


def _run_upgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    sqlite = engine.dialect.name == "sqlite"
    with write_engine(engine).connect() as connection:
        if sqlite:
            # Batch migrations rebuild tables (copy, drop, rename); with foreign keys enforced, dropping a
            # parent would cascade-delete its children. SQLite ignores this pragma inside a transaction, so
            # it goes straight to the driver connection (in autocommit mode, see registry_db.engine).
            set_sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except CommandError as e:
            known = [script.revision for script in script_directory().walk_revisions()]
            raise CatalogueValueError("revision", revision, ["head", *known]) from e
        finally:
            if sqlite:
                set_sqlite_foreign_keys(connection, on=True)


def set_sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Switch SQLite's foreign key enforcement for this connection, outside any transaction."""
    driver_connection = connection.connection.driver_connection
    if driver_connection is None:  # pragma: no cover - a live connection always has one
        raise RuntimeError("connection is closed")
    driver_connection.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Serialize migrations across processes: advisory lock on PostgreSQL, a file lock for SQLite."""
    if engine.dialect.name == "postgresql":
        with _postgres_advisory_lock(engine):
            yield
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with filelock.FileLock(f"{Path(database).expanduser()}.migrate.lock", timeout=_LOCK_TIMEOUT_S):
        yield


@contextlib.contextmanager
def _postgres_advisory_lock(engine: Engine) -> Iterator[None]:
    try:
        connection = engine.connect()
    except DBAPIError as e:
        raise DatabaseUnreachableError(redact(engine.url), _first_line(e)) from e
    with connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            connection.commit()


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0]
