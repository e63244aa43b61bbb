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


@pytest.mark.parametrize("port", [0, 118099, -1])
def test_a_port_outside_1_to_65535_is_rejected_naming_the_key(tmp_path, port):
    with pytest.raises(ValidationError, match=r"port\n.*(greater|less) than or equal to "
                                              r"(1|65535)"):
        Settings.load(write(tmp_path, {"port": port}))


def test_a_port_override_is_validated_like_the_file(tmp_path):
    with pytest.raises(ValidationError, match="port"):
        Settings.load(write(tmp_path, {}), port=118099)
    assert Settings.load(write(tmp_path, {}), port=9001).port == 9001


@pytest.mark.parametrize(("api_base", "reason"), [
    ("api.openai.com/v1", "not an http"),
    ("ftp://example.com/v1", "not an http"),
    ("http:///v1", "no host"),
    ("http://127.0.0.1:118099/v1", "1-65535"),
    ("http://127.0.0.1:0/v1", "1-65535"),
])
def test_a_bad_api_base_is_rejected_naming_the_model_and_the_reason(tmp_path, api_base,
                                                                     reason):
    path = write(tmp_path, {"models": [{"name": "m", "model": "x", "api_base": api_base}]})
    with pytest.raises(ValidationError, match=rf"models\.0\.api_base\n.*{reason}"):
        Settings.load(path)


@pytest.mark.parametrize(("proxy", "ok"), [
    ("none", True), ("http://user:pw@proxy.corp:3128", True),
    ("socks5://proxy.corp:1080", False), ("proxy.corp:3128", False),
])
def test_the_proxy_setting_is_none_or_an_http_proxy_url(tmp_path, proxy, ok):
    path = write(tmp_path, {"models": [{"name": "m", "model": "x", "proxy": proxy,
                                        "api_base": "https://api.example.com/v1"}]})
    if ok:
        assert Settings.load(path).models[0].proxy == proxy
    else:
        with pytest.raises(ValidationError, match=r"models\.0\.proxy"):
            Settings.load(path)


def test_tls_and_proxy_settings_are_refused_on_the_litellm_path(tmp_path):
    path = write(tmp_path, {"models": [{"name": "m", "model": "openai/x", "provider": "litellm",
                                        "ca_file": "ca.pem", "proxy": "none"}]})
    with pytest.raises(ValidationError, match="proxy, ca_file apply to provider openai only"):
        Settings.load(path)


def test_a_client_key_without_its_certificate_is_rejected(tmp_path):
    path = write(tmp_path, {"models": [{"name": "m", "model": "x", "client_key": "k.pem",
                                        "api_base": "https://api.example.com/v1"}]})
    with pytest.raises(ValidationError, match="client_key is set without client_cert"):
        Settings.load(path)


def test_serve_refuses_a_bad_port_naming_key_and_range_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from proxy.cli import app

    result = CliRunner().invoke(app, ["serve", "--config", str(write(tmp_path, {"port": 118099}))])
    assert result.exit_code == 2
    assert "port" in result.output and "65535" in result.output
    assert "Traceback" not in result.output
