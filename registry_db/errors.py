"""Every error the catalogue raises, in one place.

Errors carry the offending values as attributes and their messages end with what to do next. Bad input
(a malformed URL, an unknown state or metric direction) subclasses ``ValueError``; a database that cannot be
reached subclasses ``ConnectionError``; a schema that does not match the code, or a lease that was lost,
subclasses ``RuntimeError``. ``exit_code`` is what the CLI exits with. This module imports nothing heavy so
the CLI can catch these errors without loading SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _rebuild(cls: type[CatalogueError], args: tuple[Any, ...], state: dict[str, Any]) -> CatalogueError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class CatalogueError(Exception):
    """Root of every error raised by ``registry_db``.

    Picklable with its fields (multiprocessing and Ray send errors between processes; the default pickling
    would call ``__init__`` with the message alone and fail in the receiving process).
    """

    exit_code = 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


# --- configuration and connection -------------------------------------------------------------------------


class DatabaseURLError(CatalogueError, ValueError):
    """The database URL cannot be parsed or names a driver that is not installed."""

    exit_code = 2

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"database URL {url!r} is not usable: {reason}. Use sqlite:///PATH/catalogue.db or "
            "postgresql+psycopg://USER@HOST:PORT/DBNAME (set PRUNA_HUB_DATABASE_URL or --database-url)."
        )


class DatabaseUnreachableError(CatalogueError, ConnectionError):
    """The database server did not accept a connection."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot connect to the catalogue database {url}: {reason}. Check that the server is running "
            "and that the host, port, user and database name in the URL are right."
        )


class CatalogueMissingError(CatalogueError, LookupError):
    """A read-only command was pointed at a catalogue that does not exist (it creates nothing)."""

    def __init__(self, url: str, path: str | None) -> None:
        self.url = url
        self.path = path
        where = f"{path} does not exist" if path else "the database holds no catalogue yet"
        super().__init__(
            f"no catalogue at {url}: {where}, and reading creates nothing. Check the path (--database-url or "
            "PRUNA_HUB_DATABASE_URL), or create the catalogue with `pruna-hub db upgrade`."
        )


# --- schema -----------------------------------------------------------------------------------------------


class SchemaError(CatalogueError, RuntimeError):
    """The database schema does not match this version of the code."""

    def __init__(self, url: str, current: str | None, head: str, message: str) -> None:
        self.url = url
        self.current = current
        self.head = head
        super().__init__(message)


class SchemaBehindError(SchemaError):
    """The database was created by an older pruna-hub and has not been migrated yet."""

    def __init__(self, url: str, current: str | None, head: str) -> None:
        super().__init__(
            url,
            current,
            head,
            f"the catalogue at {url} is at schema revision {current}, older than this code's {head}. "
            "Back it up if you wish, then run `pruna-hub db upgrade`.",
        )


class SchemaAheadError(SchemaError):
    """The database was migrated by a newer pruna-hub than the one running."""

    def __init__(self, url: str, current: str | None, head: str) -> None:
        super().__init__(
            url,
            current,
            head,
            f"the catalogue at {url} is at schema revision {current}, which this pruna-hub does not know "
            f"(its newest is {head}): the database was written by a newer version. Upgrade pruna-hub "
            "(pip install -U pruna-hub); never downgrade a shared catalogue.",
        )


class UnmanagedDatabaseError(SchemaError):
    """The database holds tables but no migration record: it is not a pruna-hub catalogue."""

    def __init__(self, url: str, head: str, tables: Iterable[str]) -> None:
        self.tables = sorted(tables)
        super().__init__(
            url,
            None,
            head,
            f"the database at {url} already holds tables ({', '.join(self.tables[:5])}"
            f"{', ...' if len(self.tables) > 5 else ''}) but no alembic_version record, so it is not a "
            "pruna-hub catalogue. Point PRUNA_HUB_DATABASE_URL at an empty or pruna-hub database.",
        )


# --- records ----------------------------------------------------------------------------------------------


class CatalogueValueError(CatalogueError, ValueError):
    """A value passed to a catalogue function is not allowed."""

    exit_code = 2

    def __init__(self, field: str, value: object, allowed: Iterable[str] | str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed if isinstance(allowed, str) else ", ".join(sorted(allowed))
        super().__init__(f"{field} = {value!r} is not valid; allowed: {self.allowed}.")


class NotFoundError(CatalogueError, LookupError):
    """A record asked for by key is not in the catalogue."""

    def __init__(self, kind: str, key: object, hint: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"no {kind} {key!r} in the catalogue. {hint}")


class JobStateError(CatalogueError, RuntimeError):
    """A job cannot make the requested transition from the state it is in."""

    def __init__(self, job_id: int, state: str, action: str) -> None:
        self.job_id = job_id
        self.state = state
        self.action = action
        super().__init__(
            f"job {job_id} is {state!r} and cannot be {action}. Claim it first (claim_next_job) or leave "
            "finished jobs alone."
        )


class JobActionError(CatalogueError, RuntimeError):
    """An operator's retry, requeue or cancel does not apply to the state a job is in."""

    def __init__(
        self, job_id: int, state: str, action: str, allowed: Iterable[str], *, changed_meanwhile: bool = False
    ) -> None:
        self.job_id = job_id
        self.state = state
        self.action = action
        self.allowed = sorted(allowed)
        why = "was changed by someone else meanwhile; it is now" if changed_meanwhile else "is"
        super().__init__(
            f"job {job_id} {why} {state!r}, so `{action}` does not apply to it (only to "
            f"{', '.join(self.allowed)} jobs); nothing was changed. See it with "
            f"`pruna-hub jobs show {job_id}`."
        )


class LeaseLostError(CatalogueError, RuntimeError):
    """The worker's lease on a job expired and another worker took the job, or the job was finished."""

    def __init__(self, job_id: int, owner: str, attempt: int) -> None:
        self.job_id = job_id
        self.owner = owner
        self.attempt = attempt
        super().__init__(
            f"lease of {owner!r} on job {job_id} (attempt {attempt}) is no longer held: it expired and "
            "another worker claimed the job, or the job was finished. Stop working on it; renew leases "
            "more often than they expire."
        )
