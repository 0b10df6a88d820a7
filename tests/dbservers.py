"""Real PostgreSQL and Redis servers for the tests, started on loopback from Debian's
packages (``postgresql``, ``redis-server``; ``.ci/run`` installs them).

Each server runs from a temporary directory and stops with the session.  Where a server
is not installed the tests that need it skip, saying which package to install; with
``CHATPLUG_REQUIRE_SERVERS=1`` (set by CI) they fail instead.  PostgreSQL refuses to run
as root: as root, its processes run as the ``postgres`` user (the package creates it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "RedisServer", "postgres_server", "redis_server"]

REQUIRE = os.environ.get("CHATPLUG_REQUIRE_SERVERS", "") == "1"
_START_SECONDS = 30.0


def _missing(what: str, package: str) -> None:
    message = f"{what} is not installed (Debian package {package}; .ci/run installs it)"
    if REQUIRE:
        pytest.fail(message + " and CHATPLUG_REQUIRE_SERVERS=1 requires it")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {_START_SECONDS} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster: ``url`` of its ``postgres`` database; :meth:`database`
    makes a fresh one per test."""

    port: int
    process: subprocess.Popen[bytes]
    datadir: Path
    _count: int = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server (a database outage); :meth:`start` brings it back.

        PostgreSQL's fast shutdown (SIGINT to the postmaster): it ends the clients'
        sessions at once, where SIGTERM's smart shutdown would wait for them to leave.
        """
        pidfile = self.datadir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pidfile.read_text().splitlines()[0]), signal.SIGINT)
        _stop(self.process)

    def start(self) -> None:
        # The stopped server may still be exiting (its postmaster.pid, its port): wait.
        deadline = time.monotonic() + _START_SECONDS
        while (self.datadir / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process = _start_postgres(self.datadir, self.port)


def _postgres_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _start_postgres(datadir: Path, port: int) -> subprocess.Popen[bytes]:
    binary = _postgres_bin()
    assert binary is not None
    process = subprocess.Popen(
        [*_as_postgres(), str(binary / "postgres"), "-D", str(datadir), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={datadir}",
         "-c", "fsync=off", "-c", "full_page_writes=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, process, "postgres")
    _wait_ready(port)
    return process


def _wait_ready(port: int) -> None:
    # Listening is not accepting: "the database system is starting up" comes first.
    import psycopg

    deadline = time.monotonic() + _START_SECONDS
    while True:
        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                            connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL cluster on loopback (trust authentication, loopback only)."""
    binary = _postgres_bin()
    if binary is None:
        _missing("PostgreSQL", "postgresql")
    pytest.importorskip("psycopg", reason="psycopg 3 (the postgres extra) is not installed")
    assert binary is not None
    root = Path(tempfile.mkdtemp(prefix="chatplug-pg-"))
    datadir = root / "data"
    try:
        datadir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
            shutil.chown(datadir, "postgres")
        subprocess.run([*_as_postgres(), str(binary / "initdb"), "-D", str(datadir), "-A",
                        "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120)
        port = _free_port()
        server = PostgresServer(port, _start_postgres(datadir, port), datadir)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RedisServer:
    """A running Redis: ``url``; :meth:`stop`/:meth:`start` for an outage."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        _stop(self.process)

    def start(self) -> None:
        self.process = _start_redis(self.port)


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, process, "redis-server")
    return process


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Start a Redis server on loopback, without persistence."""
    if shutil.which("redis-server") is None:
        _missing("Redis", "redis-server")
    pytest.importorskip("redis", reason="redis-py (the redis extra) is not installed")
    port = _free_port()
    server = RedisServer(port, _start_redis(port))
    try:
        yield server
    finally:
        server.stop()
