"""The coding agents people run every day, against the gateway: Claude Code on
``/v1/messages`` and Codex on ``/v1/responses``, each through one tool-using turn
(the agent runs the tool the upstream asked for and sends its output back), in front
of each upstream wire.

Both are npm packages; ``.ci/run`` installs them (pinned) and points
``AGENT_BIN_DIR`` at their ``node_modules/.bin``, and sets
``REQUIRE_AGENTS=1`` so that CI fails rather than skips without them.
Elsewhere the tests skip with the reason when they are not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatplug.server import ServerSettings, create_app
from chatplug.server.store import ResponseStore
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

GATEWAY_KEY = "agents-gateway-key-000001"
UPSTREAMS = ["OpenAI/gpt-4o-mini", "Anthropic/claude-test-1", "Gemini/gemini-test-flash"]
AGENT_TIMEOUT = 60


def _agent(name: str) -> str:
    folder = os.environ.get("AGENT_BIN_DIR")
    found = shutil.which(name, path=folder) if folder else shutil.which(name)
    if found is None:
        reason = (f"{name} is not installed (npm: @anthropic-ai/claude-code, @openai/codex; "
                  ".ci/run installs them)")
        if os.environ.get("REQUIRE_AGENTS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=AGENT_TIMEOUT * 2) as server:
        yield server


@pytest.fixture
def gateway(upstream: ScriptedServer, tmp_path: Path) -> Iterator[GatewayServer]:
    registry = registry_for(upstream, max_retries=0, timeout=30)
    app = create_app(registry, ServerSettings(api_keys=GATEWAY_KEY),  # type: ignore[arg-type]
                     responses=ResponseStore(tmp_path / "responses.db"))
    with GatewayServer(app) as server:
        yield server
    registry.close()


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("ANTHROPIC_", "OPENAI_", "CLAUDE_", "CODEX_", "CHATPLUG_"))}
    return subprocess.run(command, env={**base, **env}, capture_output=True, text=True,
                          timeout=AGENT_TIMEOUT, cwd=cwd, stdin=subprocess.DEVNULL, check=False)


def _tool_results(upstream: ScriptedServer) -> list[str]:
    """Every tool output the agent sent back upstream, as text, whatever the wire."""
    return [json.dumps(request.json) for request in upstream.requests[1:]]


@pytest.mark.parametrize("model", UPSTREAMS)
def test_claude_code_runs_a_tool_turn_through_the_gateway(
        gateway: GatewayServer, upstream: ScriptedServer, tmp_path: Path, model: str) -> None:
    claude = _agent("claude")
    arguments = json.dumps({"command": "echo chatplug-claude-ran",
                            "description": "Print a marker"})
    upstream.add(text="", tool_calls=[{"id": "call_b1", "type": "function", "function": {
        "name": "Bash", "arguments": arguments}}], fragment=7)
    upstream.add(text="The command printed the marker.")
    (tmp_path / "home").mkdir()
    done = _run([claude, "-p", "run the marker command", "--model", model,
                 "--allowedTools", "Bash", "--output-format", "json"], {
        "HOME": str(tmp_path / "home"), "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": GATEWAY_KEY, "ANTHROPIC_SMALL_FAST_MODEL": model,
        "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1"}, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["result"] == "The command printed the marker."
    assert result["num_turns"] == 2
    assert any("chatplug-claude-ran" in sent for sent in _tool_results(upstream)), \
        "the tool's output went back upstream"


@pytest.mark.parametrize("model", UPSTREAMS)
def test_codex_runs_a_tool_turn_through_the_gateway(
        gateway: GatewayServer, upstream: ScriptedServer, tmp_path: Path, model: str) -> None:
    codex = _agent("codex")
    upstream.add(text="", tool_calls=[{"id": "call_x1", "type": "function", "function": {
        "name": "exec_command", "arguments": json.dumps({"cmd": "echo chatplug-codex-ran"})}}],
        fragment=9)
    upstream.add(text="Done: the marker was printed.")
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "chatplug"\n'
        "[model_providers.chatplug]\n"
        'name = "chatplug gateway"\n'
        f'base_url = "{gateway.url}/v1"\n'
        'env_key = "CHATPLUG_GATEWAY_KEY"\n'
        'wire_api = "responses"\n')
    done = _run([codex, "exec", "--skip-git-repo-check", "--sandbox", "danger-full-access",
                 "run: echo chatplug-codex-ran"], {
        "HOME": str(tmp_path), "CODEX_HOME": str(home),
        "CHATPLUG_GATEWAY_KEY": GATEWAY_KEY}, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Done: the marker was printed." in done.stdout
    assert any("chatplug-codex-ran" in sent for sent in _tool_results(upstream)), \
        "the tool's output went back upstream"
