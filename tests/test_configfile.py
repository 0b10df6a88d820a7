"""chatplug.toml: where it is read from, what it holds, and the errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatplug.configfile import Price, config_path, load_config
from chatplug.errors import ConfigurationError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHATPLUG_HOME", str(tmp_path))
    monkeypatch.delenv("CHATPLUG_CONFIG", raising=False)
    return tmp_path


def test_a_missing_file_in_the_home_is_an_empty_config(home: Path) -> None:
    config = load_config()
    assert config.path == home / "chatplug.toml"
    assert not config.exists
    assert config.models == {}
    assert config.default_model is None
    assert config.prices == {}


def test_the_file_holds_aliases_routes_the_default_model_and_prices(home: Path) -> None:
    (home / "chatplug.toml").write_text(
        'default_model = "fast"\n[models]\nfast = "OpenAI/gpt-4o-mini"\n'
        'smart = ["OpenAI/gpt-4.1", "GravityEngine"]\n'
        '[prices."OpenAI/gpt-4o-mini"]\ninput = 0.15\noutput = 0.6\ncached = 0.075\n'
        '[prices."Anthropic/*"]\ninput = 3\noutput = 15\n', encoding="utf-8")
    config = load_config()
    assert config.default_model == "fast"
    assert config.models == {"fast": "OpenAI/gpt-4o-mini",
                             "smart": ("OpenAI/gpt-4.1", "GravityEngine")}
    assert config.prices["OpenAI/gpt-4o-mini"] == Price(input=0.15, output=0.6, cached=0.075)
    assert config.prices["Anthropic/*"] == Price(input=3.0, output=15.0)


def test_the_variable_and_an_explicit_path_win(home: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "team.toml"
    other.write_text('default_model = "OpenAI/gpt-4.1"\n', encoding="utf-8")
    monkeypatch.setenv("CHATPLUG_CONFIG", str(other))
    assert config_path() == other
    assert load_config().default_model == "OpenAI/gpt-4.1"
    explicit = tmp_path / "x.toml"
    explicit.write_text("", encoding="utf-8")
    assert load_config(explicit).path == explicit


@pytest.mark.parametrize(("text", "says"), [
    ("[models\n", "not valid TOML"),
    ("[models]\nfast = 3\n", "alias 'fast'"),
    ('[prices."OpenAI/x"]\ninput = 1\n', "needs both input and output"),
    ('[prices."OpenAI/x"]\ninput = 1\noutput = -2\n', "number ≥ 0"),
    ('[prices."OpenAI/x"]\ninput = 1\noutput = 2\ncache = 1\n', "unknown cache"),
    ("default_model = 4\n", "default_model"),
])
def test_a_malformed_file_is_an_error_naming_the_file(home: Path, text: str, says: str) -> None:
    (home / "chatplug.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_config()
    assert says in str(caught.value)
    assert "chatplug.toml" in str(caught.value)


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_storing_the_default_model_rewrites_only_its_line(home: Path) -> None:
    from chatplug.configfile import store_default_model

    path = home / "chatplug.toml"
    path.write_text("# the team's file\n[models]\nfast = \"OpenAI/gpt-4o-mini\"  # cheap\n"
                    "[prices.\"OpenAI/gpt-4o-mini\"]\ninput = 0.15\noutput = 0.6\n",
                    encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    assert store_default_model("fast") == path
    assert load_config().default_model == "fast"
    store_default_model("OpenAI/gpt-4.1")
    text = path.read_text(encoding="utf-8")
    assert text.count("default_model") == 1
    assert text.replace('default_model = "OpenAI/gpt-4.1"\n\n', "") == before  # all kept
    assert load_config().prices  # the other sections still parse
    store_default_model(None)
    assert load_config().default_model is None
    assert "# cheap" in path.read_text(encoding="utf-8")
    with pytest.raises(ConfigurationError, match="non-empty"):
        store_default_model("  ")


def test_storing_creates_the_file_and_never_rewrites_a_broken_one(home: Path) -> None:
    from chatplug.configfile import store_default_model

    store_default_model('a "quoted" name')
    assert load_config().default_model == 'a "quoted" name'
    path = home / "chatplug.toml"
    path.write_text("[models\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        store_default_model("fast")
    assert path.read_text(encoding="utf-8") == "[models\n"


def test_use_config_names_the_file_for_worker_processes(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from chatplug.configfile import use_config

    monkeypatch.setenv("CHATPLUG_CONFIG", "")  # what use_config sets is undone after the test
    team = tmp_path / "team.toml"
    team.write_text('default_model = "fast"\n', encoding="utf-8")
    assert use_config(team).default_model == "fast"
    assert os.environ["CHATPLUG_CONFIG"] == str(team)
    with pytest.raises(ConfigurationError, match="does not exist"):
        use_config(tmp_path / "missing.toml")
