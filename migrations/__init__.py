"""Alembic environment and versions of the catalogue schema, shipped as a package so an installed wheel can
migrate (``registry_db.migrate`` finds the scripts through this package's location)."""
