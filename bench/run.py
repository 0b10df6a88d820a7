"""Run the benchmark: ``python -m bench`` (or ``python bench/run.py``) from the repo root.

It starts the bench server in its own process, then for each measurement runs
a fresh worker process per client (chatplug, the ``requests`` baseline, and a
raw-socket client that shows the server's ceiling), several rounds with the
order alternating, and keeps the median of each figure.  It prints a markdown
table and writes ``bench/results.json``.  Nothing here asserts: a missed
target is a FAIL in the table, and the exit status stays 0 unless a run broke.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # ``python bench/run.py``: import ``bench`` from the repository root, and take
    # bench/ itself off the path so none of its modules shadows a standard one.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Any

from bench import coldstart, report
from bench.runner import BenchError, ServerProcess, run_worker, summarize
from bench.sysinfo import machine_info

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO / "bench" / "results.json"
MEASURES = ("coldstart", "latency", "stream", "ttfp", "concurrency", "memory")

#: Counts of the full run (the issue's) and of ``--quick`` (a smoke run in seconds).
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "rounds": 5,
        "coldstart_runs": 10,
        "latency": {"count": 500, "warmup": 20},
        "stream": {"chunks": 20_000, "repeat": 3},
        "ttfp": {"samples": 20, "hold_ms": 200},
        "concurrency": {"threads": 32, "calls": 50, "pieces": 100},
        "memory": {"megabytes": 10},
    },
    "quick": {
        "rounds": 1,
        "coldstart_runs": 2,
        "latency": {"count": 50, "warmup": 5},
        "stream": {"chunks": 2_000, "repeat": 1},
        "ttfp": {"samples": 3, "hold_ms": 200},
        "concurrency": {"threads": 4, "calls": 5, "pieces": 100},
        "memory": {"megabytes": 2},
    },
}


def jobs(measure: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(result key, client, worker parameters)`` of one round of ``measure``."""
    if measure == "memory":
        return [
            ("chatplug", "chatplug", {**params, "stream": True}),
            ("requests", "requests", {**params, "stream": True}),
            ("chatplug-whole", "chatplug", {**params, "stream": False}),
            ("requests-whole", "requests", {**params, "stream": False}),
        ]
    return [(name, name, params) for name in ("raw", "chatplug", "requests")]


def run_measure(
    measure: str, plan: dict[str, Any], url: str, env: dict[str, str], cwd: str
) -> dict[str, list[dict[str, Any]]]:
    """Every round of one measurement, the client order reversed on odd rounds."""
    results: dict[str, list[dict[str, Any]]] = {}
    for round_index in range(plan["rounds"]):
        order = jobs(measure, plan[measure])
        if round_index % 2:
            order.reverse()
        for key, client, params in order:
            result = run_worker(measure, client, url, params, env, cwd)
            results.setdefault(key, []).append(result)
        _progress(f"{measure}: round {round_index + 1}/{plan['rounds']} done")
    return results


def run_coldstart(
    plan: dict[str, Any], quick: bool, env: dict[str, str], cwd: str, url: str
) -> dict[str, Any]:
    """Cold-start times, the import probe, ``-X importtime``, and import + first reply."""
    runs = plan["coldstart_runs"]
    _progress(f"cold start: {runs} interleaved runs per command")
    return {
        "coldstart": coldstart.measure(runs, env, cwd),
        "first_reply": coldstart.measure(
            runs, {**env, "CHATPLUG_GRAVITYENGINE_URL": url}, cwd,
            coldstart.first_reply_commands(url),
        ),
        "imports": coldstart.import_probe(env, cwd),
        "importtime": coldstart.importtime(env, cwd, repeat=1 if quick else 3),
    }


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark chatplug against a hand-written requests client.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help=f"where to write the results (default {DEFAULT_JSON}; with "
                             "--quick, nowhere unless given: a smoke run never replaces the "
                             "committed figures)")
    parser.add_argument("--only", metavar="NAME[,NAME]",
                        help=f"run only these measurements: {', '.join(MEASURES)}")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 5, quick 1)")
    parser.add_argument("--all-plugins", action="store_true",
                        help="let workers load every installed chatplug plugin "
                             "(default: built-in providers only)")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(MEASURES)
    unknown = [name for name in chosen if name not in MEASURES]
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(MEASURES)}")
    args.measures = [name for name in MEASURES if name in chosen]
    if args.rounds is not None and not 1 <= args.rounds <= 50:
        parser.error("--rounds must be between 1 and 50")
    return args


def _environments(cwd: str, all_plugins: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(cold-start env, worker env): no inherited CHATPLUG_* settings, no stray PYTHONPATH.

    Bytecode goes to a private cache in the run's temporary directory
    (``PYTHONPYCACHEPREFIX``), written by the untimed first run: every timed
    start then loads compiled modules, as an installed package does, even when
    the environment sets PYTHONDONTWRITEBYTECODE or chatplug's sources just
    changed, and nothing is written outside the temporary directory.

    Workers run with ``CHATPLUG_PLUGINS=""`` (chatplug's built-in providers
    only) unless ``all_plugins``: the figures are chatplug's, not those of
    whatever provider or observer plugins the venv happens to hold (an
    observer that appends to a file on every call would be counted against
    chatplug).  Cold start keeps the plain environment: setting a plugin
    control makes the registry read its settings, which the issue's commands
    do not do.
    """
    dropped = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX",
               "OPENAI_API_KEY", "OPENAI_BASE_URL")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("CHATPLUG_") and k not in dropped}
    clean["PYTHONPYCACHEPREFIX"] = str(Path(cwd) / "pycache")
    workers = {**clean, "PYTHONPATH": str(REPO)}
    if not all_plugins:
        workers["CHATPLUG_PLUGINS"] = ""
    return clean, workers


def _measure_all(
    args: argparse.Namespace,
    plan: dict[str, Any],
    envs: tuple[dict[str, str], dict[str, str]],
    cwd: str,
    summary: dict[str, Any],
    raw: dict[str, Any],
) -> None:
    """Start the server and run every chosen measurement, filling ``summary`` and ``raw``."""
    cold_env, env = envs
    lifetime = 600.0 if args.quick else 3600.0
    with ServerProcess(env, cwd, lifetime) as server:
        _progress(f"bench server on {server.url}")
        if "coldstart" in args.measures:
            summary.update(run_coldstart(plan, args.quick, cold_env, cwd, server.url))
        worker_env = {**env, "CHATPLUG_GRAVITYENGINE_URL": server.url}
        for measure in args.measures:
            if measure != "coldstart":
                raw[measure] = run_measure(measure, plan, server.url, worker_env, cwd)
                summary[measure] = {k: summarize(v) for k, v in raw[measure].items()}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    plan = {**PLANS["quick" if args.quick else "full"]}
    if args.rounds is not None:
        plan["rounds"] = args.rounds
    started = time.time()
    load_before = list(os.getloadavg())
    cwd = tempfile.mkdtemp(prefix="chatplug-bench-")  # no stray .env is read
    cold_env, env = _environments(cwd, args.all_plugins)
    raw: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    try:
        _measure_all(args, plan, (cold_env, env), cwd, summary, raw)
    except BenchError as exc:
        _progress(f"failed: {exc}")
        return 1
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    rows = report.figures(summary)
    ceiling = report.ceiling_rows(summary)
    table = report.markdown(rows, ceiling)
    print(table)
    if "importtime" in summary:
        print(report.importtime_markdown(summary["importtime"]))
    payload = {
        "meta": {**machine_info(REPO), "load_average_start": load_before,
                 "plan": plan, "measures": args.measures,
                 "quick": args.quick, "all_plugins": args.all_plugins,
                 "seconds": time.time() - started,
                 "command": " ".join(["python -m bench", *(argv or sys.argv[1:])])},
        "figures": [row.as_dict() for row in rows],
        "server_ceiling": [dict(zip(("figure", "raw", "best_client", "headroom"), row,
                                    strict=True)) for row in ceiling],
        "summary": summary,
        "runs": raw,
        "table": table,
    }
    target = args.json or (None if args.quick else DEFAULT_JSON)
    if target is None:
        _progress("--quick: results not written (--json PATH writes them)")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    _progress(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
