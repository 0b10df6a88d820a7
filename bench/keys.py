"""What virtual keys cost a request: ``python -m bench.keys [--requests N]``.

The bench server (its own process) is the upstream; three ``chatplug serve`` processes
(one worker each, SQLite keys in a temporary home) stand in front of it: with the
gateway's own key only, with a virtual key whose limits are counted in the process, and
with a virtual key whose limits are counted in Redis (a ``redis-server`` started here on
loopback).  Requests go to the three in turn (interleaved), one at a time, non-stream;
the figures are each one's p50 and p99 in milliseconds and the difference to the first.
Nothing is asserted: it prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from bench.runner import ServerProcess
from bench.stats import median, percentile

STATIC = "bench-static-key-0123456789"
BODY = {"model": "GravityEngine", "messages": [{"role": "user", "content": "bench:reply:1:16"}]}


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"a process did not listen on {port}")


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _wait(port, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    redis = shutil.which("redis-server")
    if redis is None:
        print("redis-server is not installed (Debian package redis-server)", file=sys.stderr)
        return 1
    home = tempfile.mkdtemp(prefix="bench-keys-")
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    base.update(CHATPLUG_HOME=home, CHATPLUG_SERVER_API_KEYS=STATIC,
                PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    chatplug = str(Path(sys.executable).parent / "chatplug")
    made = subprocess.run([chatplug, "gateway", "keys", "create", "--name", "bench",
                           "--rpm", "1000000", "--tpm", "1000000000", "--max-parallel", "64"],
                          env=base, capture_output=True, text=True, check=True)
    virtual = made.stdout.strip()
    redis_port = _port()
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(ServerProcess(base, home, lifetime=600))
        stack.enter_context(_process([redis, "--port", str(redis_port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], base, redis_port))
        modes = {"gateway key": ({}, STATIC), "virtual key, per process": ({}, virtual),
                 "virtual key, Redis": ({"CHATPLUG_SERVER_REDIS_URL":
                                         f"redis://127.0.0.1:{redis_port}/0"}, virtual)}
        urls: dict[str, tuple[str, str]] = {}
        for name, (extra, key) in modes.items():
            port = _port()
            env = {**base, "CHATPLUG_GRAVITYENGINE_URL": upstream.url, **extra}
            stack.enter_context(_process([chatplug, "serve", "--port", str(port)], env, port))
            urls[name] = (f"http://127.0.0.1:{port}/v1/chat/completions", key)
        times: dict[str, list[float]] = {name: [] for name in urls}
        sessions = {name: stack.enter_context(requests.Session()) for name in urls}
        for round_ in range(args.requests + 50):
            for name, (url, key) in urls.items():
                started = time.perf_counter()
                answer = sessions[name].post(url, json=BODY, timeout=30,
                                             headers={"Authorization": f"Bearer {key}"})
                took = (time.perf_counter() - started) * 1000
                if answer.status_code != 200:
                    raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:200]}")
                if round_ >= 50:  # warm-up
                    times[name].append(took)
    shutil.rmtree(home, ignore_errors=True)
    first = median(times["gateway key"])
    print(f"{'mode':28} {'p50 ms':>8} {'p99 ms':>8} {'p50 +ms':>8}")
    for name, values in times.items():
        print(f"{name:28} {median(values):8.3f} {percentile(values, 0.99):8.3f} "
              f"{median(values) - first:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
