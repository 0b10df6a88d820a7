"""``chatplug demo`` and the demo server ``python -m chatplug.testing.server``: offline,
visibly streamed, nothing left running or written, one clear line for a busy port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import BIN, run_cli

CHATPLUG = str(BIN / "chatplug")


def arrivals(argv: list[str], env: dict[str, str]) -> tuple[list[tuple[float, bytes]], str, int]:
    """Run ``argv``; each stdout read with the time it arrived, stderr, the exit status."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    assert process.stderr is not None
    reads = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < 30:
            data = os.read(process.stdout.fileno(), 4096)
            if not data:
                break
            reads.append((time.monotonic(), data))
        status = process.wait(timeout=10)
        return reads, process.stderr.read().decode(), status
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env["CHATPLUG_HOME"] = str(tmp_path / "home")
    return env


def test_the_demo_streams_a_paced_reply_and_leaves_nothing(tmp_path: Path) -> None:
    reads, stderr, status = arrivals([CHATPLUG, "demo", "Hi there"], environment(tmp_path))
    assert status == 0, stderr
    text = b"".join(data for _, data in reads).decode()
    assert text.startswith("You said: Hi there — This reply comes from chatplug's scripted "
                           "server at http://127.0.0.1:")
    assert text.endswith("run `chatplug chat`.\n")
    assert len(reads) > 10  # piece by piece, not one block
    assert reads[-1][0] - reads[0][0] > 1.0  # paced so that a person sees it stream
    [line] = stderr.splitlines()
    assert line.startswith("chatplug: demo: GravityEngine -> a local scripted server on "
                           "http://127.0.0.1:")
    assert not (tmp_path / "home").exists()  # not logged
    assert list(tmp_path.iterdir()) == []  # nothing written in the working directory


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_the_demo_needs_no_network(tmp_path: Path) -> None:
    # A private network namespace has only a loopback device (down, then brought up by
    # nothing): the demo must still work, so it is offline for certain.
    env = environment(tmp_path)
    result = subprocess.run(["unshare", "-rn", "sh", "-c", f"ip link set lo up 2>/dev/null; "
                             f"exec {CHATPLUG} demo --pace 0 offline"],
                            capture_output=True, text=True, env=env, timeout=60)
    if "unshare failed" in result.stderr or "Operation not permitted" in result.stderr:
        pytest.skip("network namespaces are not permitted here")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("You said: offline")


def test_the_demo_server_paces_its_echo(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "chatplug.testing.server", "--port", "0", "--pace", "0.2",
         "--lifetime", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[4]
        env = environment(tmp_path)
        env["CHATPLUG_GRAVITYENGINE_URL"] = url
        reads, _, status = arrivals([CHATPLUG, "chat", "--no-log", "one two three four"], env)
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()  # type: ignore[union-attr]
        server.stderr.close()  # type: ignore[union-attr]
    assert status == 0
    assert b"".join(data for _, data in reads) == b"You said: one two three four\n"
    assert reads[-1][0] - reads[0][0] >= 0.7  # 5 pieces, 0.2 s apart


def test_a_busy_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "chatplug.testing.server", "--port",
                                 str(port)], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"chatplug test server: port {port} on 127.0.0.1 is in use; stop "
                             "what uses it, or choose another with --port (0: any free "
                             "port).\n")
    bad = subprocess.run([sys.executable, "-m", "chatplug.testing.server", "--pace", "x"],
                         capture_output=True, text=True, timeout=30)
    assert (bad.returncode, "expected seconds from 0 to 10" in bad.stderr) == (2, True)


def test_the_demo_is_listed_with_the_other_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = [line.split()[0] for line in result.stdout.splitlines()
                if line.startswith("    ") and not line.startswith("     ")]
    assert commands[:6] == ["chat", "providers", "models", "logs", "keys", "demo"]
