"""INSERT ... ON CONFLICT for both backends, so that concurrent writers of the same natural key converge.

SQLite and PostgreSQL share the syntax, but SQLAlchemy exposes it through each dialect's own ``insert``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def _insert(session: Session, model: type[DeclarativeBase]) -> Any:
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model)


def insert_ignore(
    session: Session, model: type[DeclarativeBase], values: Mapping[str, Any], keys: Sequence[str]
) -> bool:
    """Insert unless a row with the same ``keys`` exists; True when this call inserted it."""
    statement = _insert(session, model).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    result = session.execute(statement.returning(model.__table__.c.id))
    return result.first() is not None


def upsert(
    session: Session,
    model: type[DeclarativeBase],
    values: Mapping[str, Any],
    keys: Sequence[str],
    update: Sequence[str],
) -> int:
    """Insert, or update the ``update`` columns of the row with the same ``keys``; returns the row's id."""
    statement = _insert(session, model).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={name: statement.excluded[name] for name in update}
    )
    return int(session.execute(statement.returning(model.__table__.c.id)).scalar_one())
