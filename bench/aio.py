"""Benchmark of the async API, routes and rich events against the sync API, in one run.

``python -m bench.aio`` (``--quick`` for a smoke run, ``--json PATH`` to keep the
figures) starts the bench server (``bench/server.py``) and runs each figure in a
fresh worker process (``python -m bench.aio worker MEASURE VARIANT ...``), the
variants interleaved over several rounds, medians kept:

- stream pieces/s of one 20,000-chunk stream: sync ``Stream``, sync ``events()``,
  ``AsyncStream``, a one-entry route, and ``openai.AsyncOpenAI`` when installed;
- non-stream latency (p50 over 500 calls): sync, async, route, AsyncOpenAI;
- 500 concurrent async streams in one process: throughput, p99 time to first
  piece, errors, peak RSS per stream (and AsyncOpenAI's);
- failover: a route whose first entry's port is closed, time until the second
  entry's answer (cooldown off, so every call meets the closed port first).

It asserts nothing and writes no file unless ``--json`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.runner import ServerProcess, summarize
from bench.stats import median, percentile

REPO = Path(__file__).resolve().parent.parent
MEASURES: dict[str, tuple[str, ...]] = {
    "stream": ("sync", "events", "async", "route", "openai"),
    "latency": ("sync", "async", "route", "openai"),
    "many": ("async", "openai"),
    "failover": ("direct", "route"),
}
PLANS: dict[str, dict[str, Any]] = {
    "full": {"rounds": 3, "chunks": 20_000, "calls": 500, "streams": 500, "pieces": 50},
    "quick": {"rounds": 1, "chunks": 2_000, "calls": 50, "streams": 50, "pieces": 20},
}
SMALL = scenarios.reply(8, 16)


# -- the worker side ---------------------------------------------------------------------


def _registry(url: str) -> Any:
    os.environ["CHATPLUG_GRAVITYENGINE_URL"] = url
    from chatplug import registry

    return registry


def _openai(url: str) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=url + "/api/openai/v1", api_key="bench", max_retries=0)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stream_rate(variant: str, url: str, plan: dict[str, Any]) -> dict[str, Any]:
    chunks = plan["chunks"]
    messages = scenarios.messages(scenarios.reply(chunks, 4))
    if variant == "openai":
        async def run_openai() -> int:
            client = _openai(url)  # one per loop: its connections belong to that loop
            count = 0
            stream = await client.chat.completions.create(
                model=scenarios.MODEL, messages=messages, stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    count += 1
            await client.close()
            return count

        asyncio.run(run_openai())  # warm-up
        started = time.perf_counter()
        count = asyncio.run(run_openai())
        return {"pieces_per_s": count / (time.perf_counter() - started), "errors": chunks - count}
    registry = _registry(url)
    target = (registry.route(["GravityEngine"]) if variant == "route"
              else registry.get("GravityEngine"))
    target.create(scenarios.messages(SMALL))  # warm-up

    def run_sync() -> int:
        count = 0
        with target.create(messages, stream=True) as stream:
            items = stream.events() if variant == "events" else stream
            for item in items:
                if type(item) is str:
                    count += 1
        return count

    async def run_async() -> int:
        count = 0
        stream = await target.acreate(messages, stream=True)
        async with stream:
            async for _ in stream:
                count += 1
        return count

    started = time.perf_counter()
    count = asyncio.run(run_async()) if variant == "async" else run_sync()
    return {"pieces_per_s": count / (time.perf_counter() - started), "errors": chunks - count}


def latency(variant: str, url: str, plan: dict[str, Any]) -> dict[str, Any]:
    calls = plan["calls"]
    messages = scenarios.messages(SMALL)
    times: list[float] = []
    if variant == "openai":
        client = _openai(url)

        async def run_openai() -> None:
            for index in range(calls + 20):
                started = time.perf_counter()
                await client.chat.completions.create(model=scenarios.MODEL, messages=messages)
                if index >= 20:
                    times.append(time.perf_counter() - started)

        asyncio.run(run_openai())
    elif variant == "async":
        provider = _registry(url).get("GravityEngine")

        async def run_async() -> None:
            for index in range(calls + 20):
                started = time.perf_counter()
                await provider.acreate(messages)
                if index >= 20:
                    times.append(time.perf_counter() - started)

        asyncio.run(run_async())
    else:
        registry = _registry(url)
        target = (registry.route(["GravityEngine"]) if variant == "route"
                  else registry.get("GravityEngine"))
        for index in range(calls + 20):
            started = time.perf_counter()
            target.create(messages)
            if index >= 20:
                times.append(time.perf_counter() - started)
    return {"p50_ms": median(times) * 1000, "p99_ms": percentile(times, 0.99) * 1000,
            "errors": 0}


def many(variant: str, url: str, plan: dict[str, Any]) -> dict[str, Any]:
    streams, pieces = plan["streams"], plan["pieces"]
    messages = scenarios.messages(scenarios.reply(pieces, 4))
    firsts: list[float] = []
    errors = 0
    if variant == "openai":
        client = _openai(url)

        async def one() -> int:
            started = time.perf_counter()
            count = 0
            stream = await client.chat.completions.create(
                model=scenarios.MODEL, messages=messages, stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    if not count:
                        firsts.append(time.perf_counter() - started)
                    count += 1
            return count
    else:
        provider = _registry(url).get("GravityEngine")
        provider.create(scenarios.messages(SMALL))

        async def one() -> int:
            started = time.perf_counter()
            count = 0
            stream = await provider.acreate(messages, stream=True)
            async with stream:
                async for _ in stream:
                    if not count:
                        firsts.append(time.perf_counter() - started)
                    count += 1
            return count

    async def run() -> list[int | BaseException]:
        return await asyncio.gather(*(one() for _ in range(streams)), return_exceptions=True)

    before = _peak_rss_mb()
    started = time.perf_counter()
    results = asyncio.run(run())
    elapsed = time.perf_counter() - started
    errors = sum(1 for r in results if not isinstance(r, int) or r != pieces)
    received = sum(r for r in results if isinstance(r, int))
    peak = _peak_rss_mb()
    return {"pieces_per_s": received / elapsed, "seconds": elapsed, "errors": errors,
            "p99_first_piece_ms": percentile(firsts, 0.99) * 1000 if firsts else None,
            "peak_rss_mb": peak, "rss_per_stream_kb": (peak - before) * 1024 / streams}


def failover(variant: str, url: str, plan: dict[str, Any]) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    os.environ["CHATPLUG_OPENAI_URL"] = f"http://127.0.0.1:{closed}"
    os.environ["CHATPLUG_OPENAI_API_KEY"] = "bench-placeholder"
    registry = _registry(url)
    target = (registry.route([("OpenAI", scenarios.MODEL), "GravityEngine"], cooldown=0)
              if variant == "route" else registry.get("GravityEngine"))
    messages = scenarios.messages(SMALL)
    times: list[float] = []
    for index in range(min(plan["calls"], 200) + 5):
        started = time.perf_counter()
        completion = target.complete(messages)
        if index >= 5:
            times.append(time.perf_counter() - started)
        assert completion.provider == "GravityEngine"
    return {"p50_ms": median(times) * 1000, "max_ms": max(times) * 1000, "errors": 0}


WORKERS = {"stream": stream_rate, "latency": latency, "many": many, "failover": failover}


def worker(argv: list[str]) -> int:
    measure, variant, url, plan = argv[0], argv[1], argv[2], json.loads(argv[3])
    print(json.dumps(WORKERS[measure](variant, url, plan)))
    return 0


# -- the driver side ---------------------------------------------------------------------


def _has_openai() -> bool:
    try:
        import openai  # noqa: F401
    except ImportError:
        return False
    return True


def _run(measure: str, variant: str, url: str, plan: dict[str, Any], env: dict[str, str],
         cwd: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.aio", "worker", measure, variant, url, json.dumps(plan)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return {"errors": 1, "failed": done.stderr.strip().splitlines()[-3:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.0f}" if value >= 1000 else f"{value:.3f}" if value < 10 else \
            f"{value:.1f}"
        return text + unit
    return f"{value}{unit}"


def table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| figure | variant | value | vs sync | target |", "| --- | --- | ---: | ---: | --- |"]
    stream = summary.get("stream", {})
    base = stream.get("sync", {}).get("pieces_per_s")
    targets = {"events": "≥ 0.90×", "async": "≥ 0.80×", "route": "≥ 0.97×"}
    for variant, result in stream.items():
        rate = result.get("pieces_per_s")
        ratio = f"{rate / base:.2f}×" if rate and base else "-"
        lines.append(f"| stream pieces/s | {variant} | {_fmt(rate)} | {ratio} | "
                     f"{targets.get(variant, '')} |")
    lat = summary.get("latency", {})
    base_ms = lat.get("sync", {}).get("p50_ms")
    lat_targets = {"async": "≤ sync + 0.3 ms", "route": "≤ sync + 0.05 ms"}
    for variant, result in lat.items():
        value = result.get("p50_ms")
        delta = f"{value - base_ms:+.3f} ms" if value is not None and base_ms else "-"
        lines.append(f"| non-stream p50 | {variant} | {_fmt(value, ' ms')} | {delta} | "
                     f"{lat_targets.get(variant, '')} |")
    for variant, result in summary.get("many", {}).items():
        lines.append(
            f"| concurrent async streams | {variant} | {_fmt(result.get('pieces_per_s'))} "
            f"pieces/s, p99 TTFP {_fmt(result.get('p99_first_piece_ms'), ' ms')}, "
            f"{result.get('errors')} errors, {_fmt(result.get('rss_per_stream_kb'), ' KiB')}"
            f"/stream | | 0 errors |")
    fail = summary.get("failover", {})
    if fail:
        direct = fail.get("direct", {}).get("p50_ms")
        route = fail.get("route", {}).get("p50_ms")
        lines.append(f"| failover: first port closed | route | {_fmt(route, ' ms')} p50 | "
                     f"direct {_fmt(direct, ' ms')} | ≤ 20 ms |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.aio", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--only", default=",".join(MEASURES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    plan = dict(PLANS["quick" if args.quick else "full"])
    if args.rounds:
        plan["rounds"] = args.rounds
    cwd = tempfile.mkdtemp(prefix="chatplug-bench-aio-")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHATPLUG_", "OPENAI_")) and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(REPO), CHATPLUG_PLUGINS="",
               PYTHONPYCACHEPREFIX=str(Path(cwd) / "pycache"))
    openai = _has_openai()
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        with ServerProcess(env, cwd, 3600.0) as server:
            for number in range(plan["rounds"]):
                for measure in args.only.split(","):
                    variants = MEASURES[measure]
                    if number % 2:
                        variants = variants[::-1]  # alternate the order between rounds
                    for variant in variants:
                        if variant == "openai" and not openai:
                            continue
                        result = _run(measure, variant, server.url, plan, env, cwd)
                        rounds.setdefault(measure, {}).setdefault(variant, []).append(result)
                        print(f"[bench.aio] {measure}/{variant}: {result}", file=sys.stderr)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    summary = {measure: {variant: summarize(results) for variant, results in by.items()}
               for measure, by in rounds.items()}
    # Keep the order of MEASURES in the table, whatever order the rounds ran in.
    summary = {m: {v: summary[m][v] for v in MEASURES[m] if v in summary[m]}
               for m in MEASURES if m in summary}
    print(table(summary))
    if args.json:
        args.json.write_text(json.dumps({"plan": plan, "summary": summary, "rounds": rounds},
                                        indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
