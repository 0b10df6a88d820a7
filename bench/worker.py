"""One measurement of one client, in a fresh process; prints one JSON object.

``python -m bench.worker MEASURE --client KIND --url URL --params JSON``

A fresh process per measurement keeps imports, connection pools and
allocator state of one client from leaking into the other's figures.  The
client is built (and chatplug's registry loaded) before any clock starts, and
one small warm-up call opens the keep-alive connection, so each figure is the
steady-state cost of a call, not of an import.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from bench import scenarios
from bench.clients import CLIENTS, Client, make_client
from bench.stats import median, percentile

__all__ = ["MEASURES", "main"]

Result = dict[str, Any]
#: The non-streamed reply of the latency figure: 8 pieces of 16 characters.
SMALL_REPLY = scenarios.reply(8, 16)
#: Characters per piece of the streaming-throughput figure (a token is ~4).
TOKEN_LENGTH = 4
#: Characters per piece of the 10 MB memory check.
BIG_PIECE = 1000
#: Pieces between two samples of the current RSS during the memory check.
SAMPLE_EVERY = 250
PAGE_SIZE = resource.getpagesize()


def current_rss_mb() -> float:
    """This process's resident set size now, in MiB (Linux ``/proc``; else the peak)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return peak_rss_mb()
    return pages * PAGE_SIZE / (1024 * 1024)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ServerCounters:
    """Reads the bench server's counters of accepted connections and served requests.

    Read around a timed section they tell whether a client reused its
    keep-alive connection (one new connection for many calls) or opened one
    per call.  ``http.client`` is used because both clients load it anyway.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)

    def read(self) -> tuple[int, int]:
        """``(connections, requests)``, this read's own connection and request included."""
        import http.client

        connection = http.client.HTTPConnection(*self._address, timeout=10)
        try:
            connection.request("GET", scenarios.STATS_PATH)
            data = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        return int(data["connections"]), int(data["requests"])


@contextmanager
def counting(counters: ServerCounters | None) -> Iterator[dict[str, int]]:
    """Fill the yielded dict with the section's new connections and requests (if counted)."""
    found: dict[str, int] = {}
    if counters is None:
        yield found
        return
    connections, requests = counters.read()
    yield found
    after_connections, after_requests = counters.read()
    # Minus the closing read's own connection and request.
    found["new_connections"] = after_connections - connections - 1
    found["server_requests"] = after_requests - requests - 1


def drain(client: Client, scenario: str) -> tuple[int, int]:
    """Stream ``scenario`` to its end: ``(pieces, characters)``; keeps nothing."""
    pieces = characters = 0
    stream = client.stream(scenario)
    try:
        for piece in stream:
            pieces += 1
            characters += len(piece)
    finally:
        stream.close()
    return pieces, characters


def measure_latency(
    client: Client, count: int = 500, warmup: int = 20, counters: ServerCounters | None = None
) -> Result:
    """``count`` sequential non-streamed calls on one keep-alive connection."""
    expected = scenarios.expected_chars(SMALL_REPLY)
    for _ in range(warmup):
        client.complete(SMALL_REPLY)
    times: list[float] = []
    errors = 0
    clock = time.perf_counter
    with counting(counters) as counts:
        for _ in range(count):
            started = clock()
            try:
                text = client.complete(SMALL_REPLY)
            except Exception:
                errors += 1
                continue
            times.append(clock() - started)
            if len(text) != expected:
                errors += 1
    return {
        **counts,
        "calls": count,
        "errors": errors,
        "median_ms": median(times) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "mean_ms": sum(times) / max(1, len(times)) * 1000,
        "min_ms": min(times, default=0.0) * 1000,
    }


def measure_stream(
    client: Client, chunks: int = 20_000, repeat: int = 3, counters: ServerCounters | None = None
) -> Result:
    """Pieces per second over one ``chunks``-event stream, ``repeat`` times."""
    drain(client, scenarios.reply(100, TOKEN_LENGTH))
    scenario = scenarios.reply(chunks, TOKEN_LENGTH)
    rates: list[float] = []
    errors = 0
    with counting(counters) as counts:
        for _ in range(repeat):
            started = time.perf_counter()
            pieces, characters = drain(client, scenario)
            elapsed = time.perf_counter() - started
            if pieces != chunks or characters != chunks * TOKEN_LENGTH:
                errors += 1
            rates.append(pieces / elapsed)
    return {
        **counts,
        "chunks": chunks,
        "repeat": repeat,
        "errors": errors,
        "pieces_per_s": median(rates),
        "best_pieces_per_s": max(rates),
        "rates": rates,
    }


def measure_ttfp(
    client: Client,
    samples: int = 20,
    hold_ms: int = 200,
    pieces: int = 20,
    counters: ServerCounters | None = None,
) -> Result:
    """Delay between the server writing the first piece and the caller holding it.

    The server stamps the first piece with its ``time.monotonic()`` just before
    writing it, then waits ``hold_ms``; CLOCK_MONOTONIC is one clock for every
    process of the machine, so receive time minus stamp is the delay.  A client
    that buffered would show a delay of about ``hold_ms``.
    """
    drain(client, scenarios.hold(0, 2))
    scenario = scenarios.hold(hold_ms, pieces)
    delays: list[float] = []
    from_request: list[float] = []
    errors = 0
    with counting(counters) as counts:
        for _ in range(samples):
            sent = time.monotonic()
            stream = client.stream(scenario)
            try:
                first = next(iter(stream))
                received = time.monotonic()
                rest = sum(1 for _ in stream)
            except Exception:
                errors += 1
                continue
            finally:
                stream.close()
            if rest != pieces - 1:
                errors += 1
            delays.append(received - scenarios.parse_stamp(first))
            from_request.append(received - sent)
    return {
        **counts,
        "samples": samples,
        "hold_ms": hold_ms,
        "errors": errors,
        "median_ms": median(delays) * 1000,
        "max_ms": max(delays, default=0.0) * 1000,
        "min_ms": min(delays, default=0.0) * 1000,
        "request_to_first_ms": median(from_request) * 1000,
    }


def measure_concurrency(
    client: Client,
    threads: int = 32,
    calls: int = 50,
    pieces: int = 100,
    counters: ServerCounters | None = None,
) -> Result:
    """``threads`` threads, each making ``calls`` streamed calls of ``pieces`` pieces."""
    scenario = scenarios.reply(pieces, TOKEN_LENGTH)
    drain(client, scenario)
    errors: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(threads + 1, timeout=120)

    def work() -> None:
        mine = client.for_thread()
        failed: dict[str, int] = {}
        start.wait()
        for _ in range(calls):
            try:
                got, _ = drain(mine, scenario)
                if got != pieces:
                    failed["short reply"] = failed.get("short reply", 0) + 1
            except Exception as exc:
                name = type(exc).__name__
                failed[name] = failed.get(name, 0) + 1
        if mine is not client:
            mine.close()
        with lock:
            for name, count in failed.items():
                errors[name] = errors.get(name, 0) + count

    workers = [threading.Thread(target=work, name=f"bench-{i}") for i in range(threads)]
    with counting(counters) as counts:
        for worker in workers:
            worker.start()
        start.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
    total = threads * calls
    failures = sum(errors.values())
    return {
        **counts,
        "threads": threads,
        "calls": total,
        "errors": failures,
        "error_kinds": errors,
        "seconds": elapsed,
        "calls_per_s": (total - failures) / elapsed,
        "pieces_per_s": (total - failures) * pieces / elapsed,
    }


def measure_memory(
    client: Client, megabytes: int = 10, stream: bool = True, counters: ServerCounters | None = None
) -> Result:
    """RSS growth while receiving a ``megabytes`` MB reply, streamed or whole.

    The reference is taken after a small call of the same kind (imports done,
    connection open).  Two views, the larger one is the figure: the peak RSS
    (``ru_maxrss``) before and after, and the current RSS sampled every
    ``SAMPLE_EVERY`` pieces while streaming (or once the whole text arrived).
    The second catches growth hidden under an import-time peak.  A client
    that streams without buffering stays within a few MB; one that holds the
    body grows by a multiple of its size.
    """
    count = megabytes * 1_000_000 // BIG_PIECE
    small, big = scenarios.reply(10, BIG_PIECE), scenarios.reply(count, BIG_PIECE)
    if stream:
        drain(client, small)
    else:
        client.complete(small)
    with counting(counters) as counts:
        peak_before, current_before = peak_rss_mb(), current_rss_mb()
        highest = current_before
        started = time.perf_counter()
        if stream:
            characters = 0
            pieces = client.stream(big)
            try:
                for index, piece in enumerate(pieces):
                    characters += len(piece)
                    if index % SAMPLE_EVERY == 0:
                        highest = max(highest, current_rss_mb())
            finally:
                pieces.close()
        else:
            text = client.complete(big)
            characters = len(text)
            highest = max(highest, current_rss_mb())
            del text
        elapsed = time.perf_counter() - started
        peak_after = peak_rss_mb()
    return {
        **counts,
        "megabytes": megabytes,
        "stream": stream,
        "errors": int(characters != count * BIG_PIECE),
        "rss_before_mb": peak_before,
        "rss_after_mb": peak_after,
        "peak_growth_mb": peak_after - peak_before,
        "current_growth_mb": highest - current_before,
        "growth_mb": max(peak_after - peak_before, highest - current_before),
        "seconds": elapsed,
    }


MEASURES: dict[str, Callable[..., Result]] = {
    "latency": measure_latency,
    "stream": measure_stream,
    "ttfp": measure_ttfp,
    "concurrency": measure_concurrency,
    "memory": measure_memory,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("measure", choices=sorted(MEASURES))
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--url", required=True, help="the bench server's base URL")
    parser.add_argument("--params", default="{}", help="keyword arguments, as JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    client = make_client(args.client, args.url)
    setup = time.perf_counter() - started
    try:
        result = MEASURES[args.measure](
            client, counters=ServerCounters(args.url), **json.loads(args.params)
        )
    finally:
        client.close()
    result.update(client=args.client, measure=args.measure, setup_s=setup,
                  peak_rss_mb=peak_rss_mb())
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
