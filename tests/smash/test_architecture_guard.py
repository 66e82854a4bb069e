"""Imports go one way: smash never pulls in the service or the catalogue; the catalogue never pulls in torch.

Checked in a fresh interpreter, since this test session has already imported everything.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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
    # (In a fresh interpreter: under pytest, find_spec would find tests/registry_db, a folder of tests.)
    loaded = _top_level(_modules_after_import("registry_db"))
    assert "registry_db" in loaded
    assert "torch" not in loaded and "smash" not in loaded and "transformers" not in loaded


# --- nothing read from a folder, a download or a repo runs code -------------------------------------------

PACKAGES = ("smash", "pruna_hub", "registry_db", "migrations")
CODE_LOADERS = {("pickle", "load"), ("pickle", "loads"), ("torch", "load"), ("marshal", "loads")}
EXTRACTORS = {"extractall", "extract", "unpack_archive"}
# from_pretrained receivers that read JSON or text only (configs, tokenizers) or are our own loader
DATA_ONLY_RECEIVERS = {"AutoConfig", "AutoTokenizer", "GenerationConfig", "PrunaModel"}


def _calls() -> list[tuple[str, ast.Call]]:
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            tree = ast.parse(source.read_text(), filename=str(source))
            found += [
                (f"{source.relative_to(root)}:{n.lineno}", n)
                for n in ast.walk(tree)
                if isinstance(n, ast.Call)
            ]
    return found


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else keyword.value
    return None


def _offence(call: ast.Call) -> str | None:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return None
    receiver = ast.unparse(func.value)
    if (receiver, func.attr) in CODE_LOADERS:
        return f"{receiver}.{func.attr} runs code from the bytes it reads"
    if func.attr in EXTRACTORS:
        return f"{func.attr} writes an archive's members to disk"
    if _keyword(call, "trust_remote_code") not in (None, False):
        return "trust_remote_code must stay False"
    data_only = _keyword(call, "use_safetensors") is True or _keyword(call, "gguf_file") is not None
    if func.attr == "from_pretrained" and receiver not in DATA_ONLY_RECEIVERS and not data_only:
        return f"{receiver}.from_pretrained may unpickle pytorch_model.bin: pass use_safetensors=True"
    return None


def test_no_load_path_unpickles_extracts_or_runs_remote_code() -> None:
    """The audit of the README's Security section, kept true: every way code reads a model folder, a
    download or a repo is a data format; executable formats come only from smash.sealed_dir."""
    offences = [f"{where}: {why}" for where, call in _calls() if (why := _offence(call))]
    assert not offences, "\n".join(offences)


def test_the_guard_catches_what_it_names() -> None:
    samples = [
        "pickle.loads(data)",
        "torch.load(path)",
        "tar.extractall(folder)",
        "AutoModel.from_pretrained(path)",
        "AutoTokenizer.from_pretrained(path, trust_remote_code=True)",
    ]
    for sample in samples:
        call = ast.parse(sample).body[0].value  # type: ignore[attr-defined]
        assert _offence(call) is not None, sample
    assert _offence(ast.parse("cls.from_pretrained(p, use_safetensors=True)").body[0].value) is None  # type: ignore[attr-defined]


# --- the service reaches the catalogue through its door ---------------------------------------------------

SYNC_MAY_IMPORT = {"registry_db", "registry_db.store", "registry_db.errors"}


def test_the_sync_service_imports_neither_sqlalchemy_nor_table_classes() -> None:
    """pruna_hub.sync asks registry_db.store for domain operations and gets frozen records back; no
    session, table class or SQL of its own (as MLflow's client does with its store)."""
    root = Path(__file__).resolve().parents[2]
    offences = []
    for source in sorted((root / "pruna_hub" / "sync").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                catalogue = name.startswith("registry_db") and name not in SYNC_MAY_IMPORT
                if name.startswith("sqlalchemy") or catalogue:
                    offences.append(f"{source.name}:{node.lineno} imports {name}")
    assert not offences, offences
