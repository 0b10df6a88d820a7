"""Settings from CHATPLUG_* variables and .env, per provider, with secret keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatplug import ConfigurationError, Registry
from chatplug.settings import env_name, load_settings

from .conftest import PLANTED_KEY


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.timeout, settings.read_timeout, settings.connect_timeout) == (600, 60, 10)
    assert (settings.max_retries, settings.retry_backoff, settings.retry_backoff_max) == (
        2, 0.5, 8.0)
    assert settings.max_response_bytes == 64 * 1024 * 1024
    assert settings.strict_plugins is False
    assert settings.url_for("GravityEngine") is None


def test_per_provider_url_and_key_for_any_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATPLUG_GRAVITYENGINE_URL", "http://127.0.0.1:1/")
    monkeypatch.setenv("CHATPLUG_MY_LOCAL_LLM_URL", "http://127.0.0.1:2")
    monkeypatch.setenv("CHATPLUG_MY_LOCAL_LLM_API_KEY", PLANTED_KEY)
    settings = load_settings()
    assert settings.url_for("GravityEngine") == "http://127.0.0.1:1"  # trailing / dropped
    assert settings.url_for("My-Local LLM") == "http://127.0.0.1:2"
    key = settings.api_key_for("my-local-llm")
    assert key is not None
    assert key.get_secret_value() == PLANTED_KEY
    assert env_name("My-Local LLM", "URL") == "CHATPLUG_MY_LOCAL_LLM_URL"


def test_openai_conventional_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:3/v1")
    settings = load_settings()
    assert settings.url_for("OpenAI") == "http://127.0.0.1:3/v1"
    key = settings.api_key_for("OpenAI")
    assert key is not None
    assert key.get_secret_value() == PLANTED_KEY
    monkeypatch.setenv("CHATPLUG_OPENAI_URL", "http://127.0.0.1:4/v1")
    assert load_settings().url_for("openai") == "http://127.0.0.1:4/v1"  # ours wins


def test_dotenv_file_in_the_working_directory(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "CHATPLUG_TIMEOUT=30\nCHATPLUG_OPENAI_API_KEY=from-dotenv-0000\n"
        "CHATPLUG_GRAVITYENGINE_URL=http://127.0.0.1:5\n")
    monkeypatch.setenv("CHATPLUG_TIMEOUT", "45")  # the environment wins over .env
    settings = load_settings()
    assert settings.timeout == 45
    key = settings.api_key_for("openai")
    assert key is not None
    assert key.get_secret_value() == "from-dotenv-0000"
    assert Registry().get("GravityEngine").url == "http://127.0.0.1:5"


def test_effective_url_defaults_to_the_module_url() -> None:
    assert Registry().get("GravityEngine").url == "https://gpt4.xunika.uk"


@pytest.mark.parametrize(("variable", "value", "fragment"), [
    ("CHATPLUG_TIMEOUT", "soon", "CHATPLUG_TIMEOUT='soon'"),
    ("CHATPLUG_TIMEOUT", "-1", "greater than 0"),
    ("CHATPLUG_READ_TIMEOUT", "0", "CHATPLUG_READ_TIMEOUT"),
    ("CHATPLUG_STRICT_PLUGINS", "maybe", "CHATPLUG_STRICT_PLUGINS"),
    ("CHATPLUG_MAX_RETRIES", "11", "CHATPLUG_MAX_RETRIES='11'"),
    ("CHATPLUG_MAX_RETRIES", "-1", "CHATPLUG_MAX_RETRIES"),
    ("CHATPLUG_TIMEOUT", "1e9", "less than or equal to 86400"),
    ("CHATPLUG_MAX_RESPONSE_BYTES", "10", "CHATPLUG_MAX_RESPONSE_BYTES"),
    ("CHATPLUG_RETRY_BACKOFF", "0", "CHATPLUG_RETRY_BACKOFF"),
    ("CHATPLUG_OPENAI_URL", "api.example.invalid", "CHATPLUG_OPENAI_URL='api.example.invalid'"),
])
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=fragment.replace("(", r"\(")):
        load_settings()


def test_an_unreadable_dotenv_or_a_malformed_variable_is_a_configuration_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_bytes(b"# caf\xe9 (saved as cp1252)\nCHATPLUG_TIMEOUT=5\n")
    with pytest.raises(ConfigurationError, match=r"could not read the \.env file"):
        load_settings()
    (tmp_path / ".env").unlink()
    monkeypatch.setenv("CHATPLUG_PROVIDER_URLS", "x")
    with pytest.raises(ConfigurationError, match="invalid settings"):
        load_settings()


def test_keys_never_show_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATPLUG_OPENAI_API_KEY", PLANTED_KEY)
    settings = load_settings()
    assert PLANTED_KEY not in repr(settings)
    assert PLANTED_KEY not in str(settings)
    assert PLANTED_KEY not in settings.model_dump_json()
    provider = Registry(settings=settings).get("OpenAI")
    assert PLANTED_KEY not in repr(provider.as_dict())
    assert provider.api_key_configured
