"""Imports go one way: smash never pulls in the service or the catalogue; the catalogue never pulls in torch.

Checked in a fresh interpreter, since this test session has already imported everything.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

FORBIDDEN_FOR_SMASH = ("sqlalchemy", "click", "pruna_hub", "registry_db", "alembic", "psycopg")


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def _top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_import_smash_stays_inside_the_engine() -> None:
    loaded = _top_level(_modules_after_import("smash"))
    assert "smash" in loaded and "torch" in loaded
    assert loaded.isdisjoint(FORBIDDEN_FOR_SMASH), sorted(loaded & set(FORBIDDEN_FOR_SMASH))


def test_import_registry_db_does_not_import_torch() -> None:
    spec = importlib.util.find_spec("registry_db")
    if spec is None or spec.origin is None:
        pytest.skip("registry_db has no __init__ yet")
    loaded = _top_level(_modules_after_import("registry_db"))
    assert "registry_db" in loaded
    assert "torch" not in loaded and "smash" not in loaded and "transformers" not in loaded
