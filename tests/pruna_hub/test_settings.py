from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pruna_hub.cli import cli
from pruna_hub.settings import Settings, SettingsError, data_dir, load_settings, load_settings_with_sources


def test_flags_override_environment_override_file(tmp_path: Path) -> None:
    config = tmp_path / "pruna-hub.toml"
    config.write_text('target_org = "FromFile"\nlimit = 5\nauthors = ["a", "b"]\n')
    env = {"PRUNA_HUB_TARGET_ORG": "FromEnv", "HF_TOKEN": "hf_secret"}
    settings = load_settings({"limit": 7}, config_file=config, environ=env)
    assert settings.target_org == "FromEnv"
    assert settings.limit == 7
    assert settings.authors == ("a", "b")
    assert settings.token == "hf_secret"
    assert "hf_secret" not in repr(settings)


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="limit"):
        load_settings(environ={"PRUNA_HUB_LIMIT": "many"})
    with pytest.raises(SettingsError, match="limit"):
        load_settings({"limit": 0}, environ={})
    config = tmp_path / "c.toml"
    config.write_text('colour = "blue"\n')
    with pytest.raises(SettingsError, match=r"unknown key.*colour"):
        load_settings(config_file=config, environ={})
    config.write_text('token = "hf_x"\n')
    with pytest.raises(SettingsError, match="HF_TOKEN") as info:
        load_settings(config_file=config, environ={})
    assert "hf_x" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PRUNA_HUB_LEASE_SECONDS", "0"),  # a lease of 0 let two workers claim one job
        ("PRUNA_HUB_LEASE_SECONDS", "inf"),
        ("PRUNA_HUB_LEASE_SECONDS", "nan"),
        ("PRUNA_HUB_RETRY_BASE_SECONDS", "-1"),
        ("PRUNA_HUB_RETRY_BASE_SECONDS", "inf"),
        ("PRUNA_HUB_LIMIT", "inf"),
        ("PRUNA_HUB_LIMIT", "nan"),
        ("PRUNA_HUB_LIMIT", "2.5"),
        ("PRUNA_HUB_MAX_ATTEMPTS", "0"),
        ("PRUNA_HUB_MAX_PARAMETERS", "-8e9"),
        ("PRUNA_HUB_DEVICE", "tpu"),
    ],
)
def test_numbers_out_of_range_are_a_typed_error_naming_setting_value_and_range(
    variable: str, value: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={variable: value})
    error = info.value
    assert error.setting is not None and variable in str(error) and repr(value) in str(error)
    assert error.value == value and error.allowed and error.allowed in str(error)
    assert error.exit_code == 2


def test_toml_values_are_checked_the_same_way(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    for text in ("lease_seconds = 0\n", "limit = true\n", "limit = 1.5\n", "lease_seconds = inf\n"):
        config.write_text(text)
        with pytest.raises(SettingsError, match=text.split(" = ")[0]):
            load_settings(config_file=config, environ={})
    config.write_text("lease_seconds = 2\nmax_parameters = 8e9\n")
    settings = load_settings(config_file=config, environ={})
    assert settings.lease_seconds == 2.0 and settings.max_parameters == 8_000_000_000
    with pytest.raises(SettingsError, match="lease_seconds"):
        Settings(lease_seconds=0)


def test_sources_say_where_each_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('target_org = "FromFile"\nlimit = 5\nnamespace = "team"\n')
    env = {"PRUNA_HUB_LIMIT": "6", "HF_TOKEN": "hf_secret"}
    settings, sources = load_settings_with_sources({"namespace": "cli"}, config_file=config, environ=env)
    assert (settings.target_org, sources["target_org"]) == ("FromFile", f"file {config}")
    assert (settings.limit, sources["limit"]) == (6, "env PRUNA_HUB_LIMIT")
    assert (settings.namespace, sources["namespace"]) == ("cli", "flag")
    assert sources["token"] == "env HF_TOKEN" and sources["lease_seconds"] == "default"


def test_one_data_dir_honours_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry_db.engine import data_dir as catalogue_data_dir

    monkeypatch.delenv("PRUNA_HUB_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == catalogue_data_dir() == tmp_path / "xdg" / "pruna_hub"
    assert load_settings(environ={}).resolved_work_dir() == tmp_path / "xdg" / "pruna_hub" / "work"
    monkeypatch.setenv("PRUNA_HUB_HOME", str(tmp_path / "home"))
    assert data_dir() == catalogue_data_dir() == tmp_path / "home"


def test_config_show_prints_values_and_sources_never_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_very_secret")
    monkeypatch.setenv("PRUNA_HUB_LIMIT", "7")
    monkeypatch.setenv("PRUNA_HUB_DATABASE_URL", "postgresql+psycopg://pruna:dbpass@db.internal/pruna")
    monkeypatch.delenv("PRUNA_HUB_TARGET_ORG", raising=False)
    config = tmp_path / "c.toml"
    config.write_text('search = "llama"\n')
    runner = CliRunner()
    result = runner.invoke(cli, ["config", "show", "--config", str(config), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "hf_very_secret" not in result.output and "dbpass" not in result.output
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in result.stdout.splitlines()}
    assert rows["token"] == ["***", "env HF_TOKEN"]
    assert rows["limit"] == ["7", "env PRUNA_HUB_LIMIT"]
    assert rows["search"] == ["llama", f"file {config}"]
    assert rows["device"] == ["cpu", "flag"]
    assert rows["database_url"][1] == "env PRUNA_HUB_DATABASE_URL"
    assert rows["target_org"] == ["PrunaAI", "default: set one your token can write to"]
    data = json.loads(runner.invoke(cli, ["config", "show", "--format", "json"]).stdout)
    assert data["token"] == {"value": "***", "source": "env HF_TOKEN"}

    monkeypatch.setenv("PRUNA_HUB_LEASE_SECONDS", "0")
    result = runner.invoke(cli, ["config", "show"])
    assert isinstance(result.exception, SettingsError) and result.exception.exit_code == 2
