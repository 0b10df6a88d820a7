"""The model catalog from the command line, as real subprocesses: ``chat -m`` without
``-p``, ``models default``, the default model in ``chat`` and ``batch``, ``--config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import TEST_API_KEY

from .conftest import run_cli


def env_for(server: ScriptedServer, home: Path, **extra: str) -> dict[str, str]:
    """OpenAI (keyed) and GravityEngine both on the scripted server."""
    return {"CHATPLUG_HOME": str(home), "CHATPLUG_OPENAI_URL": server.url + "/v1",
            "CHATPLUG_OPENAI_API_KEY": TEST_API_KEY, "CHATPLUG_GRAVITYENGINE_URL": server.url,
            "CHATPLUG_LOG": "off", **extra}


def chats(server: ScriptedServer) -> list[tuple[str, str]]:
    return [(r.path, json.loads(r.body)["model"]) for r in server.requests
            if r.method == "POST"]


def test_chat_m_finds_the_provider_of_a_bare_name_or_an_alias(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    env = env_for(chatplug_server, tmp_path,
                  CHATPLUG_MODELS=json.dumps({"fast": "OpenAI/gpt-4o-mini"}))
    bare = run_cli("chat", "-m", "gpt-3.5-turbo-16k", "one", env=env)
    alias = run_cli("chat", "-m", "fast", "two", env=env)
    assert (bare.returncode, bare.stdout, alias.returncode, alias.stdout) == (
        0, "You said: one\n", 0, "You said: two\n")
    assert chats(chatplug_server) == [("/api/openai/v1/chat/completions", "gpt-3.5-turbo-16k"),
                                      ("/v1/chat/completions", "gpt-4o-mini")]


def test_chat_m_with_a_name_nobody_knows_keeps_the_default_provider(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    env = env_for(chatplug_server, tmp_path)
    del env["CHATPLUG_GRAVITYENGINE_URL"]  # chat's default provider is then OpenAI (keyed)
    result = run_cli("chat", "-m", "my-finetune", "hi", env=env)
    assert (result.returncode, result.stdout) == (0, "You said: hi\n")
    assert chats(chatplug_server)[-1] == ("/v1/chat/completions", "my-finetune")


def test_models_default_stores_shows_and_is_used_by_chat(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    env = env_for(chatplug_server, tmp_path)
    config = tmp_path / "chatplug.toml"
    config.write_text("# ours\n[models]\ncheap = \"OpenAI/gpt-4o-mini\"  # kept\n",
                      encoding="utf-8")
    assert run_cli("models", "default", env=env).stdout.startswith("no default model")
    refused = run_cli("models", "default", "no-such-model", env=env)
    assert (refused.returncode, "no-such-model" in refused.stderr) == (1, True)
    stored = run_cli("models", "default", "cheap", env=env)
    assert stored.returncode == 0, stored.stderr
    assert config.read_text(encoding="utf-8") == (
        "# ours\ndefault_model = \"cheap\"\n\n[models]\ncheap = \"OpenAI/gpt-4o-mini\"  # kept\n")
    shown = json.loads(run_cli("models", "default", "--json", env=env).stdout)
    assert shown == {"default_model": "cheap", "from": str(config),
                     "resolves_to": "OpenAI/gpt-4o-mini"}
    assert run_cli("chat", "hi", env=env).stdout == "You said: hi\n"
    assert chats(chatplug_server)[-1] == ("/v1/chat/completions", "gpt-4o-mini")
    # The variable wins over the file.
    overridden = {**env, "CHATPLUG_DEFAULT_MODEL": "GravityEngine/gpt-3.5-turbo-0613"}
    assert run_cli("chat", "hi", env=overridden).returncode == 0
    assert chats(chatplug_server)[-1] == ("/api/openai/v1/chat/completions",
                                          "gpt-3.5-turbo-0613")
    assert "CHATPLUG_DEFAULT_MODEL" in run_cli("models", "default", env=overridden).stdout
    assert run_cli("models", "default", "--unset", env=env).returncode == 0
    assert "default_model" not in config.read_text(encoding="utf-8")


@pytest.mark.parametrize("how", ["--config", "CHATPLUG_CONFIG"])
def test_batch_uses_the_config_files_default_model_and_aliases(
        chatplug_server: ScriptedServer, tmp_path: Path, how: str) -> None:
    team = tmp_path / "team.toml"
    team.write_text('default_model = "cheap"\n[models]\ncheap = "OpenAI/gpt-4o-mini"\n'
                    'old = "GravityEngine/gpt-3.5-turbo-0613"\n', encoding="utf-8")
    lines = [{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "one"}]}},
             {"custom_id": "b", "body": {"model": "old",
                                         "messages": [{"role": "user", "content": "two"}]}}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    env = env_for(chatplug_server, tmp_path / "home")
    args = ["batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--quiet"]
    if how == "--config":
        args += ["--config", str(team)]
    else:
        env["CHATPLUG_CONFIG"] = str(team)
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(chats(chatplug_server)) == [
        ("/api/openai/v1/chat/completions", "gpt-3.5-turbo-0613"),
        ("/v1/chat/completions", "gpt-4o-mini")]


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    for command in (["batch", "in.jsonl", "-o", "out.jsonl"], ["serve", "--port", "1"]):
        result = run_cli(*command, "--config", str(tmp_path / "nowhere.toml"),
                         env={"CHATPLUG_HOME": str(tmp_path)})
        assert result.returncode == 1
        assert "nowhere.toml does not exist" in result.stderr
