"""Catalogue fixtures: every test that takes ``catalogue``, ``db_url`` or ``empty_db_url`` runs on SQLite
and on the PostgreSQL server (skipped, with the reason, only when the server is unreachable)."""

from registry_db.testing import (  # noqa: F401
    backend,
    catalogue,
    db_url,
    empty_db_url,
    namespace,
    pg_database,
    sqlite_template,
)
