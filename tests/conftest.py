"""Shared fixtures.  ``chatplug_server`` and ``chatplug_registry`` come from chatplug's own
pytest plugin (``chatplug.testing.pytest_plugin``, registered through ``pytest11``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.dbservers import PostgresServer, RedisServer, postgres_server, redis_server

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: A key planted in tests to prove it never leaks; it looks like no real provider's key.
PLANTED_KEY = "planted-secret-7f3a9c"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # "No tests ran" must fail CI loudly, never pass as an empty success.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _isolated(chatplug_isolated: None) -> None:
    """Every test runs without the developer's settings (chatplug's own fixture)."""


def default_sigint() -> None:
    """``preexec_fn`` of a child a test sends SIGINT (Ctrl-C): pytest started with SIGINT
    ignored (``python -m pytest &`` from a script) passes SIG_IGN on to its children, and
    Python leaves an ignored SIGINT ignored; the child gets the default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``chatplug`` command as a user would."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("CHATPLUG_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    # chatplug's own files (keys, logs) stay in the test's temporary home.
    full_env["CHATPLUG_HOME"] = os.environ.get("CHATPLUG_HOME", "")
    full_env.update(env or {})
    return subprocess.run(
        [str(BIN / "chatplug"), *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def user_message() -> list[dict[str, str]]:
    return [{"role": "user", "content": "Привет, как дела?"}]


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    """Fail if the test leaves a thread of its own running."""
    import threading

    before = set(threading.enumerate())
    yield
    deadline = 50
    while deadline and set(threading.enumerate()) - before:
        deadline -= 1
        threading.Event().wait(0.1)
    left = [t.name for t in set(threading.enumerate()) - before]
    assert not left, f"threads left running: {left}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on loopback for the session (``PostgresServer.database()`` per test)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A real Redis on loopback for the session."""
    with redis_server() as server:
        yield server
