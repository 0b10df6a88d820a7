"""Holes of both transports found by the attack of issue 18 (4, 5, 6), and the layers
of the transport: each test failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from chatplug import ChatplugError, Registry
from chatplug.testing.pytest_plugin import registry_for

from .rawserver import RawServer, chunk, event, response_head

MESSAGES = [{"role": "user", "content": "hello"}]
ROOT = __file__.rsplit("/tests/", 1)[0]


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer(lifetime=60) as made:
        yield made


def _registry(url: str, **settings: Any) -> Registry:
    return registry_for(SimpleNamespace(url=url), urls={"GravityEngine": url},  # type: ignore[arg-type]
                        plugins="", max_retries=0, **settings)


def _outcome(call: Any) -> tuple[str, str]:
    try:
        return "ok", str(call())
    except ChatplugError as error:
        return type(error).__name__, str(error)


def _both(registry: Registry, stream: bool) -> list[tuple[str, str]]:
    """The sync call's outcome, then the loop's (aiohttp), each bounded by the call's
    timeout."""
    provider = registry.provider("GravityEngine")

    def sync() -> str:
        if stream:
            return "".join(provider.create(MESSAGES, stream=True, timeout=10))
        return provider.complete(MESSAGES, timeout=10).text

    async def loop() -> str:
        if stream:
            reply = await provider.acreate(MESSAGES, stream=True, timeout=10)
            return "".join([piece async for piece in reply])
        return (await provider.acomplete(MESSAGES, timeout=10)).text

    return [_outcome(sync), _outcome(lambda: asyncio.run(loop()))]


# -- hole 4: an endless chunked trailer ----------------------------------------------------


def test_an_endless_chunked_trailer_is_refused_at_once_by_both_transports(
        raw: RawServer) -> None:
    def endless_trailer(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="text/event-stream",
                                   Transfer_Encoding="chunked")
                     + chunk(event("hi", finish="stop")) + b"0\r\nX-Trailer: ")
        with contextlib.suppress(OSError):
            for _ in range(400):  # 4 MiB of one trailer line, over 8 s at most
                conn.sendall(b"a" * 10240)
                if raw._stop.wait(0.02):
                    return

    raw.then(endless_trailer, times=2)
    registry = _registry(raw.url)
    try:
        started = time.monotonic()
        outcomes = _both(registry, stream=True)
        elapsed = time.monotonic() - started
    finally:
        registry.close()
    for kind, text in outcomes:
        assert kind in ("ProviderResponseError", "ProviderConnectionError",
                        "StreamInterruptedError"), (kind, text)
        assert "unexpected" not in text
    assert elapsed < 6, outcomes  # not held to the deadline (10 s each)


# -- hole 5: content-encoding chains ---------------------------------------------------------


@pytest.mark.parametrize("layers", [3, 1200])
def test_a_long_content_encoding_chain_is_a_typed_error_in_both_transports(
        raw: RawServer, layers: int) -> None:
    body = b'{"choices": [{"message": {"content": "deep"}, "finish_reason": "stop"}]}'
    for _ in range(layers):
        body = gzip.compress(body, compresslevel=1)
    coding = ", ".join(["gzip"] * layers)

    def layered(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="application/json", Content_Encoding=coding,
                                   Content_Length=str(len(body))) + body)

    raw.then(layered, times=2)
    registry = _registry(raw.url)
    try:
        outcomes = _both(registry, stream=False)
    finally:
        registry.close()
    for kind, text in outcomes:
        assert kind == "ProviderResponseError", text
        assert f"chains {layers} codings" in text


def test_two_codings_are_still_undone(raw: RawServer) -> None:
    body = gzip.compress(gzip.compress(
        b'{"choices": [{"message": {"content": "twice"}, "finish_reason": "stop"}]}'))

    def layered(conn: socket.socket, request: bytes) -> None:
        # Two header lines are one chain, as two values in one line are.
        conn.sendall(response_head(Content_Type="application/json", Content_Encoding="gzip")
                     [:-2] + f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body)

    raw.then(layered, times=2)
    registry = _registry(raw.url)
    try:
        assert _both(registry, stream=False) == [("ok", "twice")] * 2
    finally:
        registry.close()


# -- hole 6: a connect cancelled mid-way is closed --------------------------------------------


class Accepting:
    """Accepts slowly and holds every connection; tells which the client closed."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        ends = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < ends:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.accepted.append(conn)
            time.sleep(0.002)  # slowly: connects pile up in the backlog meanwhile

    def open_ones(self) -> int:
        """Connections the client has not closed, after waiting a moment for its FINs."""
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            while True:  # what completed in the backlog was opened too
                self.listener.settimeout(0.2)
                conn, _ = self.listener.accept()
                self.accepted.append(conn)
        still = 0
        for conn in self.accepted:
            conn.settimeout(1.0)
            try:
                data = conn.recv(65536)
                while data:  # a request that got through: read on to the close
                    data = conn.recv(65536)
            except TimeoutError:
                still += 1
            except OSError:
                pass
        return still

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.listener.close()


def test_tasks_cancelled_while_connecting_leave_no_connection_open() -> None:
    server = Accepting()
    registry = _registry(f"http://127.0.0.1:{server.port}")

    async def main() -> None:
        provider = registry.provider("GravityEngine")
        tasks = [asyncio.create_task(provider.acreate(MESSAGES, timeout=10))
                 for _ in range(120)]
        for index, task in enumerate(tasks):  # cancelled at every stage of connecting
            if index % 4 == 0:
                await asyncio.sleep(0)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    gc.disable()  # what is left open must be closed by chatplug, not by the collector
    try:
        asyncio.run(main())
        still = server.open_ones()
        assert server.accepted  # connects got through: there was something to leak
        assert still == 0
    finally:
        gc.enable()
        registry.close()
        server.close()


# -- layers --------------------------------------------------------------------------------


def test_the_transport_never_imports_the_wire_formats() -> None:
    import ast
    import pathlib

    found = []
    for path in sorted(pathlib.Path(ROOT, "core", "transport").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                if module.startswith("..wire") or module.startswith("chatplug.wire"):
                    found.append(f"{path.name}: {module}")
            elif isinstance(node, ast.Import):
                found += [f"{path.name}: {alias.name}" for alias in node.names
                          if alias.name.startswith("chatplug.wire")]
    assert found == []


def test_importing_the_loop_transport_needs_no_aiohttp_until_a_call() -> None:
    code = ("import sys, chatplug.transport.native as n; n.available(); "
            "print('aiohttp' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, check=False)
    assert result.stdout.strip() == "False", result.stderr


WITHOUT_AIOHTTP = """
import asyncio, sys, threading
sys.modules["aiohttp"] = None  # not installed
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

with ScriptedServer(lifetime=30) as server:
    registry = registry_for(server, plugins="")
    async def main():
        provider = registry.provider("GravityEngine")
        stream = await provider.acreate([{"role": "user", "content": "hi there"}], stream=True)
        return await provider.acreate([{"role": "user", "content": "hi"}]), \
            [piece async for piece in stream]
    print(registry.runtime.transport.native, asyncio.run(main()))
    print(any(t.name.startswith("chatplug-async") for t in threading.enumerate()))
"""


def test_without_aiohttp_async_calls_run_on_worker_threads() -> None:
    result = subprocess.run([sys.executable, "-c", WITHOUT_AIOHTTP], capture_output=True,
                            text=True, timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "False ('You said: hi', ['You', ' said:', ' hi', ' there'])", "True"]
