"""Retries through the gateway: one openai-python ``create()`` (its default retries)
against ``chatplug serve`` against an upstream that answers every request 429 with
``Retry-After``: how long the call took and how many requests reached the upstream.

    python -m bench.retries                 # Retry-After: 7, the gateway's default retries
    python -m bench.retries --retry-after 1 --status 503

Not part of the test suite (tests/test_gateway_retries.py checks the counts with short
waits); it prints one line and asserts nothing.  Loopback only; every process it starts
stops when it ends.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from chatplug.testing import ScriptedServer

#: More failures than the gateway and the SDK together could ask for.
FAILURES = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int, process: subprocess.Popen[bytes], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("chatplug serve did not start")


def measure(status: int, retry_after: str) -> tuple[float, int, str]:
    """Seconds one ``create()`` took, the upstream's request count, the client's error."""
    import openai

    with ScriptedServer(lifetime=600) as upstream:
        for _ in range(FAILURES):
            upstream.add(status=status, text="slow down", headers={"Retry-After": retry_after})
        port = _free_port()
        env = {**os.environ, "CHATPLUG_OPENAI_URL": upstream.url + "/v1",
               "CHATPLUG_OPENAI_API_KEY": "bench-not-a-key", "CHATPLUG_TIMEOUT": "300"}
        serve = Path(sys.executable).parent / "chatplug"
        process = subprocess.Popen([str(serve), "serve", "--port", str(port)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _ready(port, process)
            with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="client",
                               timeout=300) as client:
                started = time.monotonic()
                try:
                    client.chat.completions.create(
                        model="OpenAI/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
                    said = "no error"
                except openai.APIStatusError as error:
                    said = f"{error.status_code} x-should-retry=" \
                           f"{error.response.headers.get('x-should-retry')}"
                elapsed = time.monotonic() - started
        finally:
            process.terminate()
            process.wait(10)
        return elapsed, len(upstream.requests), said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--status", type=int, default=429)
    parser.add_argument("--retry-after", default="7")
    args = parser.parse_args(argv)
    elapsed, count, said = measure(args.status, args.retry_after)
    print(f"upstream {args.status} Retry-After {args.retry_after}: one create() took "
          f"{elapsed:.1f} s, {count} upstream requests, the client got {said}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
