"""The catalogue handle: one engine, its schema checked once, and sessions for reading and writing.

Library functions in ``registry_db.jobs``, ``registry_db.records`` and ``registry_db.queries`` take a
``Session`` and never commit: the caller decides what one transaction is, with ``catalogue.session()``
(commits on success, rolls back on error). ``catalogue.read_session()`` is for queries; on SQLite it does
not take the write lock, so the CLI can read while workers write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from registry_db.engine import create_catalogue_engine, redact, resolve_url, write_engine
from registry_db.errors import CatalogueMissingError, DatabaseUnreachableError
from registry_db.migrate import SchemaState, SchemaStatus, ensure_schema
from registry_db.models import DEFAULT_NAMESPACE


class Catalogue:
    """An open catalogue database. Create it with :meth:`open`."""

    def __init__(self, engine: Engine, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.engine = engine
        self.namespace = namespace
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        self._write = sessionmaker(bind=write_engine(engine), expire_on_commit=False)
        self.status: SchemaStatus | None = None

    @classmethod
    def open(
        cls,
        url: str | URL | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        create: bool = True,
        read_only: bool = False,
        **engine_kwargs: Any,
    ) -> Catalogue:
        """Connect and check the schema (an empty database is created at head when ``create``).

        ``read_only`` is for commands that only look: the catalogue must exist at head already, and
        nothing is created (no SQLite file, no folder, no tables): ``CatalogueMissingError`` otherwise.
        Raises DatabaseURLError, DatabaseUnreachableError or a SchemaError; never returns a catalogue
        that the code cannot use.
        """
        engine = create_catalogue_engine(resolve_url(url), read_only=read_only, **engine_kwargs)
        try:
            catalogue = cls(engine, namespace=namespace)
            catalogue.status = ensure_schema(engine, create=create and not read_only)
            if read_only and catalogue.status.state is SchemaState.EMPTY:
                raise CatalogueMissingError(catalogue.url, None)
        except BaseException:
            engine.dispose()
            raise
        return catalogue

    @property
    def url(self) -> str:
        return redact(self.engine.url)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._wrap_errors(), self._write() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Session]:
        with self._wrap_errors(), self._read() as session:
            yield session

    @contextlib.contextmanager
    def _wrap_errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as e:
            if e.connection_invalidated or _is_connect_error(e):
                raise DatabaseUnreachableError(self.url, str(e.orig).strip().splitlines()[0]) from e
            raise

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


def _is_connect_error(error: DBAPIError) -> bool:
    text = str(error.orig).lower()
    return "connection" in text and ("refused" in text or "failed" in text or "closed" in text)
