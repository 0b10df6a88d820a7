"""Process plumbing: the bench server's process, worker processes, and medians of rounds."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from bench.stats import median

__all__ = ["BenchError", "ServerProcess", "run_worker", "summarize"]

STARTUP_TIMEOUT = 20.0
WORKER_TIMEOUT = 600.0
STOP_TIMEOUT = 5.0


class BenchError(RuntimeError):
    """A server or worker process failed; the message carries its stderr's tail."""


class ServerProcess:
    """``python -m bench.server`` in its own process, stopped on exit.

    It stops by itself too: after ``lifetime`` seconds, or as soon as its
    standard input (a pipe from this process) closes.
    """

    def __init__(self, env: dict[str, str], cwd: str, lifetime: float) -> None:
        self._env = env
        self._cwd = cwd
        self._lifetime = lifetime
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        self._log = open(Path(self._cwd) / "server.log", "wb")  # closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.server", "--port", "0",
             "--lifetime", str(self._lifetime)],
            env=self._env, cwd=self._cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log,
        )
        try:
            port = self._read_port()
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{port}"
        return self

    def _read_port(self) -> int:
        assert self._process is not None
        assert self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(STARTUP_TIMEOUT):
                raise BenchError(f"the bench server did not start in {STARTUP_TIMEOUT:g} s")
        line = self._process.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "PORT":
            raise BenchError(f"the bench server said {' '.join(line)!r} instead of PORT <n>")
        return int(line[1])

    def stop(self) -> None:
        """Close its stdin (it stops), then terminate or kill it if it lingers."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT)
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_worker(
    measure: str,
    client: str,
    url: str,
    params: dict[str, Any],
    env: dict[str, str],
    cwd: str,
) -> dict[str, Any]:
    """Run one ``bench.worker`` process and return its JSON result."""
    argv = [sys.executable, "-m", "bench.worker", measure, "--client", client, "--url", url,
            "--params", json.dumps(params)]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=WORKER_TIMEOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BenchError(f"worker {measure}/{client} exited {done.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds: medians of numbers, sums of errors.

    ``errors`` is summed (one error in any round counts); per-kind error counts
    are merged; lists (per-repeat rates) are concatenated; other values are
    taken from the first round.
    """
    if not results:
        return {}
    merged: dict[str, Any] = {"rounds": len(results)}
    for key, first in results[0].items():
        values = [r[key] for r in results if key in r]
        if key == "errors":
            merged[key] = sum(values)
        elif key == "error_kinds":
            kinds: dict[str, int] = {}
            for value in values:
                for name, count in value.items():
                    kinds[name] = kinds.get(name, 0) + count
            merged[key] = kinds
        elif isinstance(first, list):
            merged[key] = [item for value in values for item in value]
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            merged[key] = median(values)
            merged[f"{key}_rounds"] = values
        else:
            merged[key] = first
    return merged
