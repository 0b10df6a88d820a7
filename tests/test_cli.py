"""The real ``chatplug`` command, run as a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from chatplug.testing import ScriptedServer

from .conftest import BIN, PLANTED_KEY, default_sigint, run_cli


def env_for(server: ScriptedServer, **extra: str) -> dict[str, str]:
    return {"CHATPLUG_GRAVITYENGINE_URL": server.url,
            "CHATPLUG_OPENAI_URL": server.url + "/v1", **extra}


def test_providers_table() -> None:
    result = run_cli("providers")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "MODELS", "STREAM", "AUTH", "URL", "FROM"]
    gravity = next(r for r in rows if r.startswith("GravityEngine"))
    assert "gpt-3.5-turbo-16k, gpt-3.5-turbo-0613" in gravity
    assert "https://gpt4.xunika.uk" in gravity
    openai = next(r for r in rows if r.startswith("OpenAI"))
    assert "(any)" in openai
    assert "set CHATPLUG_OPENAI_API_KEY" in openai


def test_providers_json_shape() -> None:
    result = run_cli("providers", "--json", env={"CHATPLUG_OPENAI_API_KEY": PLANTED_KEY})
    payload = json.loads(result.stdout)
    assert set(payload) == {"providers", "routes", "observers", "errors", "disabled",
                            "not_allowed"}
    gravity = next(p for p in payload["providers"] if p["name"] == "GravityEngine")
    assert set(gravity) == {"name", "url", "models", "supports_stream", "needs_auth",
                            "supports_tools", "supports_vision", "native_async", "params",
                            "parameters", "distribution", "version"}
    assert gravity["params"].startswith("chatplug.providers.gravityengine supports: (model: str")
    assert gravity["parameters"][3] == {"name": "temperature", "type": "float",
                                        "default": 0.7, "required": False}
    assert PLANTED_KEY not in result.stdout + result.stderr
    assert "key set" in run_cli("providers", env={"OPENAI_API_KEY": PLANTED_KEY}).stdout


def test_providers_name_shows_params() -> None:
    result = run_cli("providers", "gravityengine")
    assert result.returncode == 0
    assert "chatplug.providers.gravityengine supports: (model: str" in result.stdout
    assert re.search(r"temperature +float +0\.7", result.stdout)
    single = json.loads(run_cli("providers", "OpenAI", "--json").stdout)
    assert single["name"] == "OpenAI"


def test_chat_streams_the_reply(chatplug_server: ScriptedServer) -> None:
    result = run_cli("chat", "Привет, как дела?", env=env_for(chatplug_server))
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "You said: Привет, как дела?\n", "")


def test_chat_reads_stdin_with_system_model_and_options(chatplug_server: ScriptedServer) -> None:
    result = run_cli("chat", "-m", "gpt-3.5-turbo-0613", "-s", "Be brief.", "-o",
                     "temperature=0.25", "-o", "presence_penalty=1", "--no-stream", "-",
                     input="from stdin\n", env=env_for(chatplug_server))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: from stdin\n"
    body = chatplug_server.requests[-1].json
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "from stdin"}]
    assert (body["model"], body["stream"]) == ("gpt-3.5-turbo-0613", False)
    assert (body["temperature"], body["presence_penalty"]) == (0.25, 1.0)


def test_openai_chat_with_key_from_the_environment(chatplug_server: ScriptedServer) -> None:
    result = run_cli("chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi",
                     env=env_for(chatplug_server, OPENAI_API_KEY=PLANTED_KEY))
    assert result.stdout == "You said: hi\n"
    assert chatplug_server.requests[-1].headers["Authorization"] == f"Bearer {PLANTED_KEY}"


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int,
                          fragment: str) -> None:
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chatplug: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_expected_failures_are_one_line(chatplug_server: ScriptedServer) -> None:
    env = env_for(chatplug_server)
    assert_one_line_error(run_cli("chat", "-p", "Nope", "hi", env=env), 1,
                          "alias or model named 'Nope'")
    assert_one_line_error(run_cli("chat", "-o", "temperature", "hi", env=env), 2,
                          "-o expects KEY=VALUE")
    assert_one_line_error(run_cli("chat", "-o", "temperature=warm", "hi", env=env), 1,
                          "parameter temperature='warm' is invalid")
    assert_one_line_error(run_cli("chat", "-o", "colour=red", "hi", env=env), 1,
                          "unknown parameter 'colour'")
    assert_one_line_error(run_cli("chat", "-m", "gpt-5", "hi", env=env), 1,
                          "model 'gpt-5' is not supported")
    assert_one_line_error(run_cli("chat", "-p", "OpenAI", "-m", "x", "hi", env=env), 1,
                          "Set CHATPLUG_OPENAI_API_KEY")
    assert_one_line_error(run_cli("chat", "", env=env), 2, "the prompt is empty")
    assert_one_line_error(run_cli("chat", "hi", env={**env, "CHATPLUG_TIMEOUT": "x"}), 1,
                          "CHATPLUG_TIMEOUT")
    # No prompt was sent (-m gpt-5 asked the configured servers for their model lists).
    assert [r for r in chatplug_server.requests if r.method == "POST"] == []
    for _ in range(3):
        chatplug_server.add(status=503, text="overloaded")
    assert_one_line_error(run_cli("chat", "hi", env={**env, "CHATPLUG_RETRY_BACKOFF": "0.01"}),
                          1, "503 Service Unavailable after 3 attempts: overloaded.")
    assert run_cli("bogus").returncode == 2
    assert run_cli("chat", "--nonsense").returncode == 2


def test_undecodable_prompts_are_usage_errors(chatplug_server: ScriptedServer) -> None:
    env = env_for(chatplug_server, PYTHONIOENCODING="utf-8")
    full_env = {**os.environ, **env}
    for key in [k for k in full_env if k.startswith("CHATPLUG_") and k not in env]:
        del full_env[key]
    piped = subprocess.run([str(BIN / "chatplug"), "chat"], input=b"\xff hi",
                           capture_output=True, env=full_env, timeout=30)
    assert piped.returncode == 2
    assert b"standard input is not utf-8 text" in piped.stderr
    assert b"Traceback" not in piped.stderr
    argv = subprocess.run([str(BIN / "chatplug").encode(), b"chat", b"\xff"],
                          capture_output=True, env=full_env, timeout=30)
    assert argv.returncode == 2
    assert b"not valid text" in argv.stderr
    assert chatplug_server.requests == []


def test_a_cut_stream_prints_what_arrived_then_fails(chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="one two three", drop_after=2)
    result = run_cli("chat", "hi", env=env_for(chatplug_server))
    assert result.stdout == "one two"
    assert_one_line_error(result, 1, "incomplete")


def test_ctrl_c_exits_130_and_closes_the_stream(chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="first and then much later", hold_after=1, hold=10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env.update(env_for(chatplug_server))
    process = subprocess.Popen([str(BIN / "chatplug"), "chat", "hi"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                               preexec_fn=default_sigint)
    try:
        assert process.stdout is not None
        assert process.stdout.read(5) == b"first"  # streaming has begun
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 130
        assert time.monotonic() - started < 5
        assert b"Traceback" not in process.stderr.read()  # type: ignore[union-attr]
    finally:
        process.kill()
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]


def test_python_dash_m_chatplug() -> None:
    result = subprocess.run([sys.executable, "-m", "chatplug", "--version"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("chatplug 0.1.0")


def test_readme_quick_start_with_the_bundled_server() -> None:
    """`python -m chatplug.testing.server` + `chatplug chat`, as the README shows."""
    server = subprocess.Popen(
        [sys.executable, "-m", "chatplug.testing.server", "--port", "0", "--lifetime", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith("chatplug test server on http://127.0.0.1:")
        url = banner.split()[4]
        result = run_cli("chat", "Привет, как дела?", env={"CHATPLUG_GRAVITYENGINE_URL": url})
        assert (result.returncode, result.stdout) == (0, "You said: Привет, как дела?\n")
    finally:
        server.terminate()
        server.wait(timeout=10)
        stderr = server.stderr.read() if server.stderr else ""
        server.stdout.close()  # type: ignore[union-attr]
        server.stderr.close()  # type: ignore[union-attr]
    assert "Warning" not in stderr
