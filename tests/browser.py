"""Headless Chromium (Debian's ``chromium``) for tests: a page's DOM after it loaded, and a
screenshot read back into pixels.  No internet, no first-run work, a fresh profile each
time; every run ends within its timeout.  Missing Chromium skips, or fails under
``CHATPLUG_REQUIRE_SERVERS=1`` (CI installs it)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

from tests.dbservers import REQUIRE

__all__ = ["chromium", "dump_dom", "read_png", "screenshot"]

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars", "--force-device-scale-factor=1")


def chromium() -> str:
    """The Chromium executable.  Skips (fails in CI) when it is not installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (Debian package chromium; .ci/run installs it)"
        if REQUIRE:
            pytest.fail(message + " and CHATPLUG_REQUIRE_SERVERS=1 requires it")
        pytest.skip(message)
    return found


def _run(*arguments: str, timeout: float = 60) -> str:
    with tempfile.TemporaryDirectory(prefix="chatplug-chromium-") as profile:
        done = subprocess.run([chromium(), *_FLAGS, f"--user-data-dir={profile}", *arguments],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(url: str) -> str:
    """The DOM of ``url`` once loaded, serialized."""
    return _run("--dump-dom", url)


def screenshot(url: str, path: Path, width: int, height: int) -> None:
    """A PNG of ``url`` in a ``width`` × ``height`` window."""
    _run(f"--screenshot={path}", f"--window-size={width},{height}", url)
    assert path.is_file()
    assert path.stat().st_size > 0


def read_png(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and the RGB pixels (row by row) of an 8-bit, non-interlaced RGB or
    RGBA PNG, as Chromium writes them."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, color in (2, 6), interlace) == (8, True, 0), (depth, color, interlace)
    channels = 3 if color == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    pixels: list[tuple[int, int, int]] = []
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up),
                           (abs(guess - corner), 2, corner))[2]
                line[i] = (line[i] + near) & 0xFF
        pixels.extend((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, channels))
        previous = line
    return width, height, pixels
