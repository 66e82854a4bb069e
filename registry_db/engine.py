"""Where the catalogue lives and how to connect to it.

``PRUNA_HUB_DATABASE_URL`` picks the database; without it the catalogue is a SQLite file in the data
directory (``$PRUNA_HUB_HOME``, else ``$XDG_DATA_HOME/pruna_hub``, else ``~/.local/share/pruna_hub``), so
one command works with nothing installed. PostgreSQL (``postgresql+psycopg://...``) is for several workers.

SQLite is tuned for several processes on one machine: WAL (readers never block the writer), a busy
timeout (a writer waits instead of failing), foreign keys on, and write transactions opened with
``BEGIN IMMEDIATE`` so that a read-then-write transaction cannot fail half way with "database is locked"
when another writer got there first (pysqlite's own deferred BEGIN would allow that).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from registry_db.errors import CatalogueMissingError, DatabaseURLError

ENV_DATABASE_URL = "PRUNA_HUB_DATABASE_URL"
ENV_HOME = "PRUNA_HUB_HOME"
SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 5
# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE (see the module docstring).
WRITE_OPTION = "pruna_hub_write"
_SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def data_dir() -> Path:
    """The directory for pruna-hub's own data (the default catalogue lives here)."""
    if home := os.environ.get(ENV_HOME):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "pruna_hub"


def default_database_url() -> str:
    return f"sqlite:///{data_dir() / 'catalogue.db'}"


def resolve_url(url: str | URL | None = None) -> URL:
    """The URL to use: the argument, else ``PRUNA_HUB_DATABASE_URL``, else the default SQLite file.

    ``postgresql://`` means psycopg 3 here (SQLAlchemy's own default driver, psycopg2, is not installed).
    """
    raw = url if url is not None else (os.environ.get(ENV_DATABASE_URL) or default_database_url())
    text = raw.render_as_string(hide_password=True) if isinstance(raw, URL) else str(raw)
    try:
        parsed = raw if isinstance(raw, URL) else make_url(raw.strip())
    except ArgumentError as e:
        raise DatabaseURLError(text, "it is not a URL like dialect+driver://host/database") from e
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED_BACKENDS:
        raise DatabaseURLError(text, f"backend {backend!r} is not supported (use sqlite or postgresql)")
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_driver_name() != "psycopg":
            raise DatabaseURLError(
                text, f"driver {parsed.get_driver_name()!r} is not supported (use psycopg)"
            )
        if not parsed.database:
            raise DatabaseURLError(text, "it names no database")
    return parsed


def redact(url: URL) -> str:
    """The URL as it may be printed or logged: without its password."""
    return url.render_as_string(hide_password=True)


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL, or None (PostgreSQL, in-memory, or a ``file:`` URI)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else Path(database).expanduser()


def create_catalogue_engine(
    url: str | URL | None = None, *, read_only: bool = False, **kwargs: Any
) -> Engine:
    """An Engine for the catalogue, configured per backend. Nothing connects until first use.

    ``read_only``: the SQLite file must exist already (``CatalogueMissingError``), and neither it nor its
    folder is created; SQLite would otherwise create an empty file on first connect.
    """
    parsed = resolve_url(url)
    path = sqlite_file(parsed)
    if path is not None and read_only and not path.is_file():
        raise CatalogueMissingError(redact(parsed), str(path))
    if path is not None and not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, **kwargs)
        return _postgres_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, TypeError) as e:
        raise DatabaseURLError(redact(parsed), str(e)) from e


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN out of pysqlite's hands so _sqlite_on_begin decides between DEFERRED and IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL once, waiting while another process is switching it at the same moment.

    Switching needs the exclusive lock, and SQLite does not call the busy handler for that upgrade when
    another connection holds a shared lock and wants the same (waiting could deadlock), so two processes
    opening a new catalogue together get "database is locked" at once instead of after busy_timeout.
    WAL is a property of the file: once set, later connections only read it.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _sqlite_on_begin(connection: Any) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgres_engine(url: URL, **kwargs: Any) -> Engine:
    connect_args = {
        "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
        "application_name": "pruna-hub",
        **kwargs.pop("connect_args", {}),
    }
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, connect_args=connect_args, **kwargs)


def write_engine(engine: Engine) -> Engine:
    """The same engine (same pool) whose transactions take SQLite's write lock up front."""
    return engine.execution_options(**{WRITE_OPTION: True})
