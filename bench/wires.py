"""The wires' benchmark: ``python -m bench.wires [--quick] [--json PATH]``.

What each wire's decoding costs, read by chatplug's own providers over loopback:
OpenAI chat completions (the OpenAI provider), Anthropic Messages (the Anthropic
provider) and Gemini (the Gemini provider), each against a server in its own
process that sends a pre-encoded stream in that wire's grammar (one event per
HTTP chunk, as the vendors frame them), so the server costs the same for all.

Figures, per wire, rounds interleaved and medians kept: pieces per second over a
20,000-piece stream of 4-character pieces, and the time from ``create()`` to the
first piece of a short stream (median of 50 calls on a kept-alive connection).
Targets (issue 20): each new wire ≥ 0.8× the OpenAI wire's pieces/s and its first
piece within 0.2 ms of it.  Nothing is asserted: it prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WIRES = ("OpenAI", "Anthropic", "Gemini")
MODELS = {"OpenAI": "gpt-4o-mini", "Anthropic": "claude-bench", "Gemini": "gemini-bench"}
MAX_PIECES = 200_000
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
_PIECES = re.compile(rb"bench:(\d+)")


# -- the server (its own process) ----------------------------------------------------


def _sse(events: list[tuple[str | None, dict[str, Any]]]) -> bytes:
    out = bytearray()
    for name, payload in events:
        data = json.dumps(payload, separators=(",", ":")).encode()
        event = (b"event: %s\n" % name.encode() if name else b"") + b"data: " + data + b"\n\n"
        out += b"%x\r\n%s\r\n" % (len(event), event)
    return bytes(out)


def body(wire: str, pieces: int) -> bytes:
    """The chunked body of a ``pieces``-piece stream in ``wire``'s grammar."""
    from chatplug.testing import anthropic, gemini
    from chatplug.testing.script import Script

    script = Script(pieces=["abcd"] * pieces, id="bench-1",
                    usage={"prompt_tokens": 5, "completion_tokens": pieces})
    if wire == "Anthropic":
        opening, grouped, closing = anthropic.events(script, MODELS[wire])
        events: list[tuple[str | None, dict[str, Any]]] = [
            *opening, *(item for group in grouped for item in group), *closing]
        return _sse(events) + b"0\r\n\r\n"
    if wire == "Gemini":
        chunks, last = gemini.pieces(script, MODELS[wire])
        return _sse([(None, chunk) for chunk in [*chunks, last]]) + b"0\r\n\r\n"
    chunk = {"id": "bench-1", "object": "chat.completion.chunk", "created": 0,
             "model": MODELS[wire], "choices": [{"index": 0, "delta": {"content": "abcd"},
                                                 "finish_reason": None}]}
    last_chunk = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return _sse([(None, chunk)] * pieces + [(None, last_chunk)]) + \
        b"%x\r\n%s\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n") + b"0\r\n\r\n"


async def _serve(lifetime: float) -> None:
    cache: dict[tuple[str, int], bytes] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                request = await reader.readexactly(min(length, 1 << 20))
                path = head.split(b" ", 2)[1]
                wire = ("Anthropic" if path.startswith(b"/v1/messages") else
                        "Gemini" if b":streamGenerate" in path else "OpenAI")
                match = _PIECES.search(request)
                pieces = min(int(match.group(1)), MAX_PIECES) if match else 1
                key = (wire, pieces)
                if key not in cache:
                    cache[key] = body(wire, pieces)
                writer.write(HEAD + cache[key])
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError,
                AttributeError, ValueError, asyncio.CancelledError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed], timeout=lifetime)
    server.close()


# -- the measurements (this process) -------------------------------------------------


def _providers(url: str) -> dict[str, Any]:
    from chatplug import Registry
    from chatplug.settings import Settings

    settings = Settings(provider_urls={"openai": url + "/v1", "anthropic": url,
                                       "gemini": url},
                        provider_api_keys={"openai": "bench-key-000000",
                                           "anthropic": "bench-key-000000",
                                           "gemini": "bench-key-000000"},
                        max_retries=0)
    registry = Registry(settings=settings)
    return {wire: registry.get(wire) for wire in WIRES}


def _stream(provider: Any, wire: str, pieces: int) -> tuple[float, int]:
    started = time.perf_counter()
    count = 0
    with provider.create([{"role": "user", "content": f"bench:{pieces}"}],
                         model=MODELS[wire], stream=True) as stream:
        for _ in stream:
            count += 1
    return time.perf_counter() - started, count


def _first_piece(provider: Any, wire: str) -> float:
    started = time.perf_counter()
    with provider.create([{"role": "user", "content": "bench:10"}], model=MODELS[wire],
                         stream=True) as stream:
        next(iter(stream))
        elapsed = time.perf_counter() - started
        for _ in stream:
            pass
    return elapsed


def measure(url: str, rounds: int, pieces: int, calls: int) -> dict[str, Any]:
    from statistics import median

    providers = _providers(url)
    rates: dict[str, list[float]] = {wire: [] for wire in WIRES}
    firsts: dict[str, list[float]] = {wire: [] for wire in WIRES}
    for wire in WIRES:  # warm-up: connections, imports, caches
        _stream(providers[wire], wire, 100)
        _first_piece(providers[wire], wire)
    for number in range(rounds):
        order = WIRES if number % 2 == 0 else tuple(reversed(WIRES))
        for wire in order:
            seconds, count = _stream(providers[wire], wire, pieces)
            if count != pieces:
                raise RuntimeError(f"{wire}: {count} pieces of {pieces}")
            rates[wire].append(count / seconds)
            firsts[wire] += [_first_piece(providers[wire], wire) for _ in range(calls)]
    result: dict[str, Any] = {}
    for wire in WIRES:
        result[wire] = {"pieces_per_s": median(rates[wire]),
                        "first_piece_ms": median(firsts[wire]) * 1000,
                        "rounds": rates[wire]}
    base = result["OpenAI"]
    for wire in WIRES:
        result[wire]["ratio"] = result[wire]["pieces_per_s"] / base["pieces_per_s"]
        result[wire]["first_piece_delta_ms"] = (result[wire]["first_piece_ms"]
                                                - base["first_piece_ms"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wires")
    parser.add_argument("--quick", action="store_true", help="small counts, ~5 s")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.lifetime))
        return 0
    server = subprocess.Popen([sys.executable, "-m", "bench.wires", "--serve"], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode().split()
        url = f"http://127.0.0.1:{line[1]}"
        rounds, pieces, calls = (1, 2000, 10) if args.quick else (5, 20_000, 50)
        result = measure(url, rounds, pieces, calls)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)
    print("| wire | pieces/s | × OpenAI (≥ 0.8) | first piece ms | Δ ms (≤ 0.2) |")
    print("|---|---|---|---|---|")
    for wire in WIRES:
        figures = result[wire]
        print(f"| {wire} | {figures['pieces_per_s']:,.0f} | {figures['ratio']:.2f} | "
              f"{figures['first_piece_ms']:.3f} | {figures['first_piece_delta_ms']:+.3f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
