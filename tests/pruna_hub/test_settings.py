from __future__ import annotations

from pathlib import Path

import pytest

from pruna_hub.settings import SettingsError, load_settings


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
