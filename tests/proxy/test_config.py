"""Settings: YAML file, environment overrides, strictness."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from proxy.config import Settings


def write(tmp_path, data: dict):
    path = tmp_path / "hallgate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_then_environment_then_explicit_overrides(tmp_path, monkeypatch):
    path = write(tmp_path, {"port": 9000, "retry": {"max_attempts": 2, "deadline_s": 10},
                            "models": [{"name": "m", "model": "gpt-x",
                                        "api_base": "http://127.0.0.1:1/v1"}]})
    monkeypatch.setenv("HALLGATE_RETRY__MAX_ATTEMPTS", "5")
    settings = Settings.load(path, host="0.0.0.0")
    assert settings.port == 9000 and settings.host == "0.0.0.0"
    assert settings.retry.max_attempts == 5 and settings.retry.deadline_s == 10
    assert [m.name for m in settings.models] == ["m"] and not settings.use_embedded()


def test_no_models_means_the_embedded_model():
    assert Settings().use_embedded()


def test_unknown_keys_are_errors(tmp_path):
    with pytest.raises(ValidationError, match="colour"):
        Settings.load(write(tmp_path, {"colour": "blue"}))


def test_api_key_comes_from_the_named_environment_variable(tmp_path, monkeypatch):
    path = write(tmp_path, {"models": [{"name": "m", "model": "x", "api_base": "http://h/v1",
                                        "api_key_env": "MY_UPSTREAM_KEY"}]})
    monkeypatch.setenv("MY_UPSTREAM_KEY", "sk-123")
    assert Settings.load(path).models[0].api_key() == "sk-123"
