"""The batch benchmark: ``chatplug batch`` against a hand-written ThreadPoolExecutor loop.

``python -m bench.batch`` (``--quick`` for a smoke run) starts the bench server
(``bench/server.py``) and measures, each in a fresh process, the order of the
two clients alternating from round to round:

* **throughput**: 10,000 requests (non-streamed, 8 pieces of 16 characters) at
  concurrency 64, requests per second; chatplug runs ``chatplug batch IN -o OUT
  --concurrency 64 --quiet`` (``chatplug.cli.main`` in the worker), the
  baseline what a competent developer writes: read the JSONL, a
  ``ThreadPoolExecutor(64)`` mapping a function over the lines that posts each
  body with ``requests`` (one ``Session`` per thread), write one OpenAI batch
  output line per result.  Both read the same file and write the same format;
  the time is the job's own (file read to output closed), interpreter start-up
  excluded (its process wall time is recorded too).  Target: >= 0.9x.
* **memory**: peak RSS (``ru_maxrss``) of the chatplug process for 1,000 and for
  10,000 requests; flat means the 10,000 run is within 5 MB of the 1,000 run.
* **resume**: ``chatplug batch`` run again on a finished 10,000-line output
  (nothing left to send): the job's time and the process wall time.  Target
  under 1 s.
* **connections**: TCP connections the server accepted during each run (64 is
  one per worker, kept alive).

Every output is checked (10,000 lines, each ``custom_id`` once, no errors)
before a figure counts.  Results go to ``bench/batch_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench import scenarios

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO / "bench" / "batch_results.json"
#: The reply of every request: 8 pieces of 16 characters, as the latency figure's.
SCENARIO = scenarios.reply(8, 16)
CLIENTS = ("chatplug", "requests")
PLANS: dict[str, dict[str, int]] = {
    "full": {"requests": 10_000, "small": 1_000, "concurrency": 64, "rounds": 3},
    "quick": {"requests": 1_000, "small": 200, "concurrency": 64, "rounds": 1},
}


# -- workers (fresh processes) --------------------------------------------------------


def _chatplug(source: str, output: str, url: str, concurrency: int) -> None:
    os.environ["CHATPLUG_GRAVITYENGINE_URL"] = url
    from chatplug.cli import main

    status = main(["batch", source, "-o", output, "--concurrency", str(concurrency),
                   "--quiet"])
    if status != 0:
        raise SystemExit(f"chatplug batch exited {status}")


def _requests(source: str, output: str, url: str, concurrency: int) -> None:
    """The hand-written baseline."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from bench.clients import OPTIONS, headers_for

    endpoint = url + scenarios.CHAT_PATH
    headers = headers_for(url)
    local = threading.local()

    def send(line: str) -> str:
        request = json.loads(line)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        body = {**request["body"], "model": scenarios.MODEL, "stream": False, **OPTIONS}
        try:
            response = session.post(endpoint, json=body, headers=headers, timeout=(10, 60))
            response.raise_for_status()
            record = {"id": f"batch_req_{os.urandom(6).hex()}",
                      "custom_id": request["custom_id"],
                      "response": {"status_code": response.status_code,
                                   "request_id": response.headers.get("x-request-id"),
                                   "body": response.json()},
                      "error": None}
        except (requests.RequestException, ValueError) as exc:
            record = {"id": f"batch_req_{os.urandom(6).hex()}",
                      "custom_id": request["custom_id"], "response": None,
                      "error": {"code": type(exc).__name__, "message": str(exc)}}
        return json.dumps(record) + "\n"

    with open(source, encoding="utf-8") as lines, open(output, "w", encoding="utf-8") as out, \
            ThreadPoolExecutor(concurrency) as pool:
        for result in pool.map(send, lines):
            out.write(result)


def worker(argv: list[str]) -> int:
    """``--worker CLIENT SOURCE OUTPUT URL CONCURRENCY``: one run; prints its JSON result."""
    client, source, output, url, concurrency = argv
    run = {"chatplug": _chatplug, "requests": _requests}[client]
    started = time.perf_counter()
    run(source, output, url, int(concurrency))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak}))
    return 0


# -- the driver -----------------------------------------------------------------------


def write_input(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps({
                "custom_id": f"request-{index}", "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "GravityEngine", "messages": scenarios.messages(SCENARIO)},
            }) + "\n")
    return path


def check_output(path: Path, count: int) -> None:
    """Every request answered once, without an error; else the figure does not count."""
    from bench.runner import BenchError

    ids: set[str] = set()
    errors = lines = 0
    with path.open(encoding="utf-8") as results:
        for line in results:
            record = json.loads(line)
            lines += 1
            ids.add(record["custom_id"])
            errors += record["error"] is not None
    if (lines, len(ids), errors) != (count, count, 0):
        raise BenchError(f"{path}: {lines} lines, {len(ids)} ids, {errors} errors; "
                         f"expected {count} answered once")


def server_connections(url: str) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                            timeout=10)
    try:
        connection.request("GET", scenarios.STATS_PATH)
        return int(json.loads(connection.getresponse().read())["connections"])
    finally:
        connection.close()


def run_one(client: str, source: Path, output: Path, url: str, concurrency: int,
            env: dict[str, str], cwd: str) -> dict[str, Any]:
    """One worker process; its result with wall time and the connections it opened."""
    import subprocess

    from bench.runner import WORKER_TIMEOUT, BenchError

    before = server_connections(url)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.batch", "--worker", client, str(source), str(output),
         url, str(concurrency)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=WORKER_TIMEOUT, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BenchError(f"batch worker {client} exited {done.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    result["connections"] = server_connections(url) - before - 1  # less the stats read
    return result


def measure(plan: dict[str, int], url: str, env: dict[str, str], cwd: str) -> dict[str, Any]:
    from bench.stats import median

    work = Path(cwd)
    count, small, concurrency = plan["requests"], plan["small"], plan["concurrency"]
    source = write_input(work / "requests.jsonl", count)
    rounds: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
    for index in range(plan["rounds"]):
        order = CLIENTS if index % 2 == 0 else CLIENTS[::-1]
        for client in order:
            output = work / f"{client}-{index}.jsonl"
            result = run_one(client, source, output, url, concurrency, env, cwd)
            check_output(output, count)
            result["requests_per_s"] = count / result["seconds"]
            rounds[client].append(result)
            _progress(f"round {index + 1}: {client} {result['requests_per_s']:,.0f} req/s")
    resumed = run_one("chatplug", source, work / "chatplug-0.jsonl", url, concurrency, env, cwd)
    check_output(work / "chatplug-0.jsonl", count)
    small_source = write_input(work / "small.jsonl", small)
    small_run = run_one("chatplug", small_source, work / "small-out.jsonl", url, concurrency,
                        env, cwd)
    check_output(work / "small-out.jsonl", small)

    def typical(client: str, key: str) -> float:
        return median([r[key] for r in rounds[client]])

    chatplug_rate, baseline_rate = typical("chatplug", "requests_per_s"), typical(
        "requests", "requests_per_s")
    return {
        "requests": count,
        "concurrency": concurrency,
        "chatplug_requests_per_s": chatplug_rate,
        "requests_requests_per_s": baseline_rate,
        "ratio": chatplug_rate / baseline_rate,
        "chatplug_peak_rss_mb": {str(small): small_run["peak_rss_mb"],
                                 str(count): typical("chatplug", "peak_rss_mb")},
        "requests_peak_rss_mb": typical("requests", "peak_rss_mb"),
        "resume_s": resumed["seconds"],
        "resume_wall_s": resumed["wall_s"],
        "connections": {client: [r["connections"] for r in rounds[client]]
                        for client in CLIENTS},
        "rounds": rounds,
        "resume": resumed,
        "small": small_run,
    }


def table(figures: dict[str, Any]) -> str:
    count = figures["requests"]
    rss = figures["chatplug_peak_rss_mb"]
    small, large = (rss[key] for key in sorted(rss, key=int))
    growth = large - small
    ratio = figures["ratio"]
    rows = [
        ("figure", "chatplug batch", "ThreadPoolExecutor + requests", "ratio", "target"),
        ("---", "---:", "---:", "---:", "---"),
        (f"{count:,} requests at concurrency {figures['concurrency']}",
         f"{figures['chatplug_requests_per_s']:,.0f} req/s",
         f"{figures['requests_requests_per_s']:,.0f} req/s", f"{ratio:.2f}×",
         f"≥ 0.90× {'✓' if ratio >= 0.9 else '✗'}"),
        (f"peak RSS, {min(rss, key=int)} → {max(rss, key=int)} requests",
         f"{small:.1f} → {large:.1f} MB", f"{figures['requests_peak_rss_mb']:.1f} MB", "—",
         f"flat (< 5 MB growth) {'✓' if growth < 5 else '✗'}"),
        (f"resume a finished {count:,}-line output", f"{figures['resume_s']:.2f} s "
         f"({figures['resume_wall_s']:.2f} s with start-up)", "—", "—",
         f"< 1 s {'✓' if figures['resume_s'] < 1 else '✗'}"),
        ("connections opened per run", ", ".join(map(str, figures["connections"]["chatplug"])),
         ", ".join(map(str, figures["connections"]["requests"])), "—", "(reported)"),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _progress(message: str) -> None:
    print(f"[bench.batch] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 requests, one round")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the results (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)

    import shutil
    import tempfile

    from bench.run import _environments
    from bench.runner import BenchError, ServerProcess
    from bench.sysinfo import machine_info

    plan = PLANS["quick" if args.quick else "full"]
    cwd = tempfile.mkdtemp(prefix="chatplug-bench-batch-")
    _, env = _environments(cwd, all_plugins=False)
    load_before = list(os.getloadavg())
    started = time.time()
    try:
        with ServerProcess(env, cwd, lifetime=1800.0) as server:
            _progress(f"bench server on {server.url}")
            figures = measure(plan, server.url, env, cwd)
    except BenchError as exc:
        _progress(f"failed: {exc}")
        return 1
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    markdown = table(figures)
    print(markdown)
    payload = {"meta": {**machine_info(REPO), "load_average_start": load_before,
                        "plan": plan, "seconds": time.time() - started,
                        "command": " ".join(["python -m bench.batch", *argv])},
               "figures": figures, "table": markdown}
    args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    _progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
