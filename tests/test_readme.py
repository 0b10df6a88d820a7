"""The README cannot rot: its set-up commands, its quick start and its API example run as
written, and CI runs exactly its test command."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from chatplug.testing import ScriptedServer

from .conftest import BIN, ROOT, free_port

README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
QUICK_START_PORT = 8765


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def blocks(title: str, language: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(section(title)) if m.group(1) == language]


def commands(block: str) -> list[str]:
    return [line.split("  #")[0].strip() for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def clean_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATPLUG_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(CHATPLUG_HOME=str(tmp_path / "home"), PATH=f"{BIN}{os.pathsep}{env['PATH']}",
               **extra)
    return env


def test_the_set_up_is_two_commands_and_ci_runs_the_test_command() -> None:
    [demo] = blocks("Set up", "bash")[:1]
    [tests] = blocks("Tests", "bash")
    assert commands(demo) == ['pip install . && chatplug demo']
    assert commands(tests) == ['pip install -e ".[test]" && python -m pytest']
    assert commands(blocks("Set up", "bash")[1]) == commands(tests)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands(tests)[0] in ci  # exactly the README's command, as one line


def test_the_api_in_a_dozen_lines_runs_as_a_script(chatplug_server: ScriptedServer,
                                                     tmp_path: Path) -> None:
    [code] = blocks("The API in a dozen lines", "python")
    script = tmp_path / "api.py"
    script.write_text(code, encoding="utf-8")
    chatplug_server.add(text="Всё хорошо, спасибо!")
    env = clean_environment(tmp_path, CHATPLUG_GRAVITYENGINE_URL=chatplug_server.url)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=env, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: Привет, как дела?"  # the streamed piece by piece
    assert [r.json["stream"] for r in chatplug_server.requests] == [False, True, False]
    assert chatplug_server.requests[1].json["temperature"] == 0.2
    assert not (tmp_path / "home").exists()  # the library logs nothing by itself


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    [block] = blocks("Quick start (offline)", "bash")
    # The reader's port is the quick start's one fixed number: the test runs it on a free
    # port, with the written one held busy meanwhile (another run, another program).
    assert block.count(str(QUICK_START_PORT)) == 2, "the server's --port and the URL"
    port = free_port()
    script = tmp_path / "quickstart.sh"
    # Whatever happens, the background server goes when the script ends.
    script.write_text("trap 'kill %1 2>/dev/null' EXIT\n"
                      + block.replace(str(QUICK_START_PORT), str(port)), encoding="utf-8")
    with socket.socket() as busy:
        with contextlib.suppress(OSError):  # already busy: all the better
            busy.bind(("127.0.0.1", QUICK_START_PORT))
            busy.listen()
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                                env=clean_environment(tmp_path), timeout=120, cwd=tmp_path)
    out, err = result.stdout, result.stderr
    assert out.startswith("You said: Hello — This reply comes from chatplug's scripted server")
    assert "GravityEngine  gpt-3.5-turbo-16k, gpt-3.5-turbo-0613" in out
    assert "chatplug.providers.gravityengine supports: (model: str" in out
    assert "You said: Привет, как дела?\nYou said: Tell me more\nYou said: from stdin\n" in out
    assert '"text": "You said: as JSON"' in out
    log_lines = [line for line in out.splitlines() if re.match(r"\d+ +20\d\d-", line)]
    assert [line.split()[0] for line in log_lines] == ["1", "2", "3", "4", "1"]  # logs, -q
    assert "GravityEngine  gpt-3.5-turbo-16k   declared, server" in out
    assert err.splitlines()[-1] == (
        "chatplug: error: OpenAI: no API key is configured. Set CHATPLUG_OPENAI_API_KEY (or "
        "OPENAI_API_KEY) in the environment or in .env, or save it with `chatplug keys set "
        "OpenAI`.")
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "quickstart.sh"]
    deadline = time.monotonic() + 10
    while not _port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _port_is_free(port)  # the server was stopped


def _dependency_farm(target: Path) -> Path:
    """This environment's installed packages minus chatplug and its examples, as links:
    a fresh environment gets the dependencies offline, and nothing of chatplug."""
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("chatplug", "__editable__", "pip")) or \
                entry.suffix == ".pth" or name == "__pycache__":
            continue
        (target / entry.name).symlink_to(entry)
    return target


def copy_checkout(checkout: Path) -> bool:
    """``git clone``, offline: a copy of the tracked files; False without a git checkout."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             timeout=60) if shutil.which("git") else None
    if listing is None or listing.returncode != 0:
        return False
    tracked = listing.stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    return True


def fresh_venv(tmp_path: Path) -> dict[str, str]:
    """A fresh virtual environment whose pip installs offline (this environment's
    dependencies, nothing of chatplug); the environment to run commands in it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The setuptools an older venv bundles cannot read this pyproject.toml; newer venvs
    # have none, and the build takes the one among the dependencies (as build isolation
    # would fetch it).
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y",
                    "setuptools"], check=True, capture_output=True, timeout=120)
    farm = _dependency_farm(tmp_path / "dependencies")
    Path(purelib, "dependencies.pth").write_text(f"{farm}\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHATPLUG_", "PYTHON", "VIRTUAL_ENV"))}
    # Offline: the dependencies are there; pip builds with the setuptools it can see.
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv),
               CHATPLUG_HOME=str(tmp_path / "home"), PIP_NO_INDEX="1",
               PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.mark.slow
def test_a_fresh_environment_sets_up_with_the_two_commands(tmp_path: Path) -> None:
    """`git clone` (a copy of the tracked files), a fresh venv, then the README's commands."""
    checkout = tmp_path / "chatplug"
    if not copy_checkout(checkout):
        pytest.skip("needs the git checkout (its tracked files are what a clone holds)")
    env = fresh_venv(tmp_path)
    [demo, tests] = (commands(b)[0] for b in blocks("Set up", "bash"))
    first = subprocess.run(["bash", "-c", demo], cwd=checkout, env=env, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "You said: Hello! What is chatplug?" in first.stdout
    install, _, pytest_command = tests.partition(" && ")
    assert pytest_command == "python -m pytest"
    # The whole suite inside a test would run for minutes: the install as written, then
    # pytest itself on the tests that need the example packages nobody installed.
    second = subprocess.run(
        ["bash", "-c", f"{install} && {pytest_command} -q -p no:cacheprovider "
         "examples/chatplug-ollama tests/test_registry.py::"
         "test_installed_example_package_is_discovered_and_works"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    # The Ollama example's conformance kit (async checks included) and the discovery test.
    ran = re.search(r"\b(\d+) passed\b", second.stdout)
    assert ran is not None, second.stdout[-500:]
    assert int(ran.group(1)) >= 40, second.stdout[-500:]
    assert "skipped" not in second.stdout, second.stdout[-500:]


def _run_block(title: str, server: ScriptedServer, tmp_path: Path) -> str:
    [code] = blocks(title, "python")
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = clean_environment(tmp_path, CHATPLUG_GRAVITYENGINE_URL=server.url,
                            CHATPLUG_OPENAI_URL=server.url + "/v1",
                            CHATPLUG_OPENAI_API_KEY="readme-placeholder")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=env, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_rich_results_example_runs(chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    chatplug_server.add(text="", tool_calls=[{"id": "call_1", "type": "function", "function": {
        "name": "weather", "arguments": '{"city": "Paris"}'}}])
    chatplug_server.add(text="It is 18 °C.", usage={"prompt_tokens": 20, "completion_tokens": 6,
                                                    "total_tokens": 26})
    out = _run_block("Rich results", chatplug_server, tmp_path)
    assert out.startswith("tool_calls weather It is 18 °C. Usage(prompt_tokens=20")
    second = chatplug_server.requests[1].json
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1",
                                      "content": "18 °C"}
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_1"


def test_the_async_and_route_examples_run(chatplug_server: ScriptedServer,
                                          tmp_path: Path) -> None:
    assert _run_block("Async", chatplug_server, tmp_path) == "You said: HiYou said: Hi\n"
    chatplug_server.add(status=503)
    assert _run_block("Routes", chatplug_server, tmp_path) == "OpenAI 2 You said: Hi\n"
