"""The catalogue: what the service saw on the Hub, what it smashed, published and measured.

Modules: ``models`` (the tables), ``engine`` (URLs, SQLite/PostgreSQL settings), ``migrate`` (Alembic from
code, schema checks), ``session`` (``Catalogue``: an engine with its schema checked, and sessions),
``jobs`` (job states, leases, claiming), ``records`` (base models, recipes, artifacts, lineage, benchmark
runs), ``queries`` (what the CLI asks), ``errors``. Start with::

    from registry_db import Catalogue
    with Catalogue.open() as catalogue, catalogue.session() as session:
        ...

Several organizations in one database
-------------------------------------
Every record that has a natural key carries a ``namespace`` (``"default"`` unless set), and the natural
keys start with it: base models are unique per (namespace, repo id, revision), recipes per (namespace,
name, content hash), jobs per (namespace, idempotency key), artifacts per (namespace, repo id, commit).
Metrics, lineage edges and recipe algorithms belong to a namespaced parent. Every query and every claim
filters on one namespace, so two organizations (``PRUNA_HUB_NAMESPACE=acme`` and ``=globex``, or
``--namespace``) can share one PostgreSQL database, each with its own workers, without seeing or taking
each other's jobs, even when both smash the same public base model. A namespace is a partition, not a
security boundary: whoever holds the database URL can read every namespace; give organizations that must
not see each other separate databases. (Separate PostgreSQL schemas were the alternative; they need one
migration run per schema and a search_path per connection, for no gain over a column.)

This package never imports torch (a test checks it): the CLI and the workers' claim loop stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry_db.session import Catalogue

__all__ = ["Catalogue"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing registry_db.errors (as the CLI's error handler does) stays free of SQLAlchemy.
    if name == "Catalogue":
        from registry_db.session import Catalogue

        return Catalogue
    raise AttributeError(f"module 'registry_db' has no attribute {name!r}")
