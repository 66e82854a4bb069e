"""The documentation keeps up with the code: every environment variable the code reads and every setting
is in README.md's configuration tables, and every CLI command is named in README.md (as datasette's
tests/test_docs.py does for its settings and hooks)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pruna_hub.cli import _COMMANDS
from pruna_hub.settings import _ENV, Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("smash", "pruna_hub", "registry_db")
NAME = r"""["']([A-Z][A-Z0-9_]*)["']"""
READS = [
    re.compile(rf"os\.environ\.get\(\s*{NAME}"),
    re.compile(rf"os\.environ\[\s*{NAME}\s*\]"),
    re.compile(rf"os\.environ\.setdefault\(\s*{NAME}"),
    re.compile(rf"getenv\(\s*{NAME}"),
    re.compile(rf"envvar\s*=\s*{NAME}"),  # click options read their variable too
    re.compile(rf"^ENV_[A-Z_]+\s*=\s*{NAME}", re.MULTILINE),  # names kept in a constant
]


def environment_variables() -> dict[str, list[str]]:
    """Variable -> files reading it, found by scanning the source (not by importing it)."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text("utf-8")
            for pattern in READS:
                for name in pattern.findall(text):
                    found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    for name in _ENV.values():  # read in a loop by load_settings
        found.setdefault(name, []).append("pruna_hub/settings.py")
    return found


def readme_configuration() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    return text.split("## Configuration", 1)[1].split("\n## ", 1)[0]


def test_the_scan_finds_what_the_code_reads() -> None:
    found = environment_variables()
    known = {"PRUNA_HUB_HOME", "XDG_DATA_HOME", "PRUNA_HUB_CACHE", "SMASH_COMPILE_CACHE", "PRUNA_HUB_DEBUG"}
    assert known | {"HF_TOKEN", "PRUNA_HUB_LEASE_SECONDS", "RAY_ADDRESS"} <= set(found)
    assert "PATH_INFO" not in found  # a WSGI environ key, not the process environment


@pytest.mark.parametrize("variable", sorted(environment_variables()))
def test_every_environment_variable_is_documented(variable: str) -> None:
    section = readme_configuration()
    assert f"`{variable}`" in section, (
        f"{variable} is read by {environment_variables()[variable]} but README.md's Configuration "
        "section does not list it"
    )


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Settings)])
def test_every_setting_is_in_both_tables(field: str) -> None:
    assert re.search(rf"^\| {field} \|", readme_configuration(), re.MULTILINE), field
    docstring = __import__("pruna_hub.settings").settings.__doc__
    assert re.search(rf"^\| {field} \|", docstring, re.MULTILINE), field


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_every_command_is_named_in_the_readme(command: str) -> None:
    assert f"pruna-hub {command}" in (ROOT / "README.md").read_text("utf-8"), command


def test_the_readme_says_target_org_must_be_set() -> None:
    text = (ROOT / "README.md").read_text("utf-8")
    assert "`target_org` defaults to `PrunaAI`" in text and "token" in text
