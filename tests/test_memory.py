"""Hole 2 of issue 8: ``CHATPLUG_MAX_RESPONSE_BYTES`` bounds memory, not only what is
handed on.  Each reply is sent by a raw server on 127.0.0.1 to a child process
whose peak resident memory (``VmHWM``, reset just before the call) is measured.

Every encoding chain (gzip, deflate, nested), an error body, one huge plain chunk
and one event made of short ``data:`` lines: the growth stays within a small
constant of the limit, however much the reply expands.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest

from .rawserver import RawServer, chunk, response_head

MIB = 1024 * 1024

CHILD = r"""
import json, sys
from chatplug import ChatplugError, Registry
from chatplug.settings import load_settings

url, limit, stream = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "stream"
registry = Registry(settings=load_settings(
    provider_urls={"gravityengine": url}, max_response_bytes=limit, max_retries=0,
    timeout=60, read_timeout=30))
provider = registry.get("GravityEngine")
registry.transport.session  # requests and urllib3 imported before measuring
import chatplug.wire.openai, chatplug.transport.failures

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(l.split()[1]) for l in lines if l.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak starts again from here
base = status("VmRSS")
messages = [{"role": "user", "content": "hi"}]
try:
    if stream:
        text = "".join(provider.create(messages=messages, stream=True))
    else:
        text = provider.create(messages=messages)
    outcome = f"a text of {len(text)} characters"
except ChatplugError as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:200]}"
print(json.dumps({"growth_mib": (status("VmHWM") - base) / 1024, "outcome": outcome}))
"""


@cache
def zeros(mib: int, wbits: int) -> bytes:
    """``mib`` MiB of zero bytes, compressed (gzip: wbits 31; zlib deflate: 15)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(MIB)
    return b"".join(compressor.compress(block) for _ in range(mib)) + compressor.flush()


def send_all(conn: socket.socket, head: bytes, body: bytes) -> None:
    conn.sendall(head)
    for start in range(0, len(body), MIB):  # the client stops reading: sending ends
        conn.sendall(body[start:start + MIB])


def gzip_in_one_chunk(conn: socket.socket, request: bytes) -> None:
    bomb = zeros(128, 31)
    send_all(conn, response_head(Content_Type="text/event-stream", Content_Encoding="gzip",
                                 Transfer_Encoding="chunked"), chunk(bomb) + b"0\r\n\r\n")


def deflate_in_one_chunk(conn: socket.socket, request: bytes) -> None:
    bomb = zeros(128, 15)
    send_all(conn, response_head(Content_Type="application/json", Content_Encoding="deflate",
                                 Transfer_Encoding="chunked"), chunk(bomb) + b"0\r\n\r\n")


def gzip_with_a_length(conn: socket.socket, request: bytes) -> None:
    bomb = zeros(128, 31)
    send_all(conn, response_head(Content_Type="application/json", Content_Encoding="gzip",
                                 Content_Length=str(len(bomb))), bomb)


def gzip_inside_deflate(conn: socket.socket, request: bytes) -> None:
    bomb = zlib.compress(zeros(128, 31), 9)
    send_all(conn, response_head(Content_Type="text/event-stream",
                                 Content_Encoding="gzip, deflate",
                                 Transfer_Encoding="chunked"), chunk(bomb) + b"0\r\n\r\n")


def gzip_error_body(conn: socket.socket, request: bytes) -> None:
    bomb = zeros(128, 31)
    send_all(conn, response_head("500 Internal Server Error", Content_Type="application/json",
                                 Content_Encoding="gzip", Transfer_Encoding="chunked"),
             chunk(bomb) + b"0\r\n\r\n")


def one_plain_chunk_of_64_mib(conn: socket.socket, request: bytes) -> None:
    conn.sendall(response_head(Content_Type="text/event-stream", Transfer_Encoding="chunked")
                 + b"%x\r\n" % (64 * MIB))
    block = b"x" * MIB
    for _ in range(64):
        conn.sendall(block)


def one_event_of_short_data_lines(conn: socket.socket, request: bytes) -> None:
    conn.sendall(response_head(Content_Type="text/event-stream", Transfer_Encoding="chunked"))
    block = chunk(b"data:ab\n" * 8192)  # 64 KiB of two-character data lines, never dispatched
    for _ in range(48 * 16):
        conn.sendall(block)


CASES: dict[str, tuple[Callable[[socket.socket, bytes], None], int, bool, str, float]] = {
    # name: (behaviour, limit, stream, expected error, most growth allowed in MiB)
    "gzip bomb in one chunk": (gzip_in_one_chunk, MIB, True, "ProviderResponseError", 16),
    "deflate bomb in one chunk": (deflate_in_one_chunk, MIB, False, "ProviderResponseError",
                                  16),
    "gzip bomb with a Content-Length": (gzip_with_a_length, MIB, False,
                                        "ProviderResponseError", 16),
    "gzip inside deflate": (gzip_inside_deflate, MIB, True, "ProviderResponseError", 16),
    "gzip bomb as an error body": (gzip_error_body, MIB, False, "ProviderHTTPError", 16),
    "one plain chunk of 64 MiB": (one_plain_chunk_of_64_mib, MIB, True,
                                  "ProviderResponseError", 16),
    "one event of 2 million short data lines": (one_event_of_short_data_lines, 16 * MIB,
                                                True, "ProviderResponseError", 48),
}


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer(lifetime=60) as server:
        yield server


@pytest.mark.parametrize("case", list(CASES))
def test_the_size_limit_bounds_memory(raw: RawServer, tmp_path: Path, case: str) -> None:
    behaviour, limit, stream, error, most = CASES[case]
    raw.then(behaviour)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, raw.url, str(limit), "stream" if stream else "whole"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    print(f"{case}: peak RSS growth {measured['growth_mib']:.1f} MiB "
          f"(limit {limit / MIB:g} MiB): {measured['outcome']}")
    assert measured["outcome"].startswith(error), measured["outcome"]
    if error == "ProviderResponseError":
        assert f"exceeded {limit} bytes" in measured["outcome"]
    assert measured["growth_mib"] < most
