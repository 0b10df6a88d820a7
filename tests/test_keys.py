"""``chatplug keys`` and the keys file: saved privately, read after the environment and
``.env``, shown by name only, and where each value came from in ``chatplug providers NAME``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from chatplug.testing import ScriptedServer

from .conftest import BIN, PLANTED_KEY, run_cli
from .terminal import Terminal


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_a_piped_key_round_trips_and_is_used(chatplug_server: ScriptedServer,
                                              home: Path) -> None:
    env = {"CHATPLUG_HOME": str(home), "CHATPLUG_OPENAI_URL": chatplug_server.url + "/v1"}
    saved = run_cli("keys", "set", "openai", input=f"{PLANTED_KEY}\n", env=env)
    assert saved.returncode == 0, saved.stderr
    path = home / "keys.json"
    assert saved.stderr == f"chatplug: saved the key for OpenAI in {path}\n"
    assert (stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(home.stat().st_mode)) == (
        0o600, 0o700)
    assert json.loads(path.read_text()) == {"OpenAI": PLANTED_KEY}
    listing = run_cli("keys", "list", env=env)
    assert (listing.returncode, listing.stdout) == (0, "OpenAI\n")
    assert run_cli("keys", "path", env=env).stdout == f"{path}\n"

    chat = run_cli("chat", "-p", "OpenAI", "-m", "m", "hi", env=env)
    assert (chat.returncode, chat.stdout) == (0, "You said: hi\n")
    assert chatplug_server.requests[-1].headers["Authorization"] == f"Bearer {PLANTED_KEY}"
    shown = run_cli("providers", "OpenAI", env=env)
    assert f"  key:     set (from the keys file {path})" in shown.stdout
    outputs = [saved, listing, chat, shown, run_cli("providers", "--json", env=env)]
    assert not any(PLANTED_KEY in r.stdout + r.stderr for r in outputs)

    assert run_cli("keys", "remove", "OpenAI", env=env).returncode == 0
    assert run_cli("keys", "list", env=env).stdout == ""
    assert run_cli("chat", "-p", "OpenAI", "-m", "m", "hi", env=env).returncode == 1
    again = run_cli("keys", "remove", "OpenAI", env=env)
    assert (again.returncode, "no key is saved for OpenAI" in again.stderr) == (2, True)


def test_a_key_typed_on_a_terminal_is_not_echoed(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env.update(CHATPLUG_HOME=str(home), TERM="dumb")
    with Terminal([str(BIN / "chatplug"), "keys", "set", "OpenAI"], env) as term:
        term.expect(r"Key for OpenAI \(not shown\): ")
        term.send(f"{PLANTED_KEY}\r")
        term.expect("saved the key for OpenAI")
        assert term.wait() == 0
        assert PLANTED_KEY not in term.output
    assert json.loads((home / "keys.json").read_text()) == {"OpenAI": PLANTED_KEY}


def test_the_environment_and_dot_env_win_over_the_keys_file(
    chatplug_server: ScriptedServer, home: Path, tmp_path: Path
) -> None:
    env = {"CHATPLUG_HOME": str(home), "CHATPLUG_OPENAI_URL": chatplug_server.url + "/v1"}
    assert run_cli("keys", "set", "OpenAI", input="from-the-file\n", env=env).returncode == 0
    (tmp_path / ".env").write_text("CHATPLUG_OPENAI_API_KEY=from-dot-env\n")  # the cwd
    run_cli("chat", "-p", "OpenAI", "-m", "m", "hi", env=env)
    assert chatplug_server.requests[-1].headers["Authorization"] == "Bearer from-dot-env"
    assert "key:     set (from CHATPLUG_OPENAI_API_KEY in .env)" in run_cli(
        "providers", "OpenAI", env=env).stdout

    with_env = {**env, "CHATPLUG_OPENAI_API_KEY": "from-the-environment"}
    run_cli("chat", "-p", "OpenAI", "-m", "m", "hi", env=with_env)
    assert chatplug_server.requests[-1].headers["Authorization"] == "Bearer from-the-environment"

    (tmp_path / ".env").unlink()
    conventional = {**env, "OPENAI_API_KEY": "conventional"}
    run_cli("chat", "-p", "OpenAI", "-m", "m", "hi", env=conventional)
    assert chatplug_server.requests[-1].headers["Authorization"] == "Bearer conventional"
    shown = run_cli("providers", "OpenAI", "--json", env=conventional)
    assert json.loads(shown.stdout)["sources"] == {
        "url": "CHATPLUG_OPENAI_URL in the environment",
        "api_key": "OPENAI_API_KEY in the environment"}
    noted = run_cli("keys", "set", "OpenAI", input="newer\n",
                    env={**env, "CHATPLUG_OPENAI_API_KEY": "x"})
    assert "CHATPLUG_OPENAI_API_KEY is set in the environment and is used instead" in noted.stderr


def test_where_each_provider_value_came_from(chatplug_server: ScriptedServer,
                                             home: Path) -> None:
    default = run_cli("providers", "GravityEngine", env={"CHATPLUG_HOME": str(home)})
    assert "  url:     https://gpt4.xunika.uk  (the provider's default)" in default.stdout
    assert "  key:     not needed" in default.stdout
    configured = run_cli("providers", "GravityEngine",
                         env={"CHATPLUG_HOME": str(home),
                              "CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url + "/"})
    assert (f"  url:     {chatplug_server.url}  (from CHATPLUG_GRAVITYENGINE_URL in the "
            "environment; default https://gpt4.xunika.uk)") in configured.stdout
    openai = run_cli("providers", "OpenAI", env={"CHATPLUG_HOME": str(home)})
    assert ("  key:     not set: set CHATPLUG_OPENAI_API_KEY, or run "
            "`chatplug keys set OpenAI`") in openai.stdout


def test_bad_keys_and_names_are_refused(home: Path) -> None:
    env = {"CHATPLUG_HOME": str(home)}
    empty = run_cli("keys", "set", "OpenAI", input="\n", env=env)
    assert (empty.returncode, empty.stderr) == (
        1, "chatplug: error: OpenAI: the key is empty; nothing was saved.\n")
    nothing = run_cli("keys", "set", "OpenAI", input="", env=env)
    assert nothing.returncode == 2
    typo = run_cli("keys", "set", "OpenAl", input="k\n", env=env)
    assert (typo.returncode, "Did you mean 'OpenAI'" in typo.stderr) == (1, True)
    assert run_cli("keys", "set", env=env).returncode == 2
    assert not home.exists()


def test_a_damaged_keys_file_is_one_clear_error(home: Path,
                                                chatplug_server: ScriptedServer) -> None:
    home.mkdir()
    (home / "keys.json").write_text("{not json")
    result = run_cli("chat", "hi", env={"CHATPLUG_HOME": str(home),
                                        "CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url})
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"chatplug: error: the keys file {home / 'keys.json'} is not valid "
                           "JSON")
    assert "chatplug keys set PROVIDER" in line
    assert chatplug_server.requests == []
