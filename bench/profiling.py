"""Profile one measurement of one client under cProfile, to find where time goes.

``python -m bench.profiling stream --client chatplug [--params JSON] [--top 25]``

It starts its own bench server, builds the client (not profiled: imports and
registry loading are cold start's business), then runs the measurement under
cProfile, worker threads included, and prints the top functions by own time
and by cumulative time.
Use it when a ratio misses its target, on both clients, and compare.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from bench.clients import CLIENTS, make_client
from bench.runner import ServerProcess
from bench.worker import MEASURES

REPO = Path(__file__).resolve().parent.parent


def profile_threads() -> list[cProfile.Profile]:
    """Profile every thread started from now on (cProfile sees only its own thread).

    Patches ``threading.Thread.run`` in this process only; the returned list
    fills with one profile per finished thread, to merge into the report.
    """
    profiles: list[cProfile.Profile] = []
    original: Callable[[threading.Thread], None] = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profiler = cProfile.Profile()
        profiles.append(profiler)
        profiler.runcall(original, self)

    threading.Thread.run = run  # type: ignore[method-assign]
    return profiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__)
    parser.add_argument("measure", choices=sorted(MEASURES))
    parser.add_argument("--client", choices=CLIENTS, default="chatplug")
    parser.add_argument("--params", default="{}", help="the measurement's keyword arguments")
    parser.add_argument("--top", type=int, default=25, help="rows per listing")
    parser.add_argument("--sort", default="tottime,cumulative",
                        help="pstats sort keys, one listing each (comma-separated)")
    args = parser.parse_args(argv)
    # As the workers do: chatplug's built-in providers only, no third-party
    # observer writing files on every call (and into the working directory).
    os.environ["CHATPLUG_PLUGINS"] = ""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="chatplug-profile-") as cwd, \
            ServerProcess(env, cwd, lifetime=600.0) as server:
        client = make_client(args.client, server.url)
        threads = profile_threads()
        profiler = cProfile.Profile()
        try:
            result = profiler.runcall(MEASURES[args.measure], client, **json.loads(args.params))
        finally:
            client.close()
    print(json.dumps(result))
    for key in args.sort.split(","):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        for thread in threads:
            stats.add(thread)
        stats.strip_dirs().sort_stats(key).print_stats(args.top)
        print(f"--- {args.client} {args.measure} ({len(threads)} threads merged), "
              f"sorted by {key} ---")
        print(out.getvalue().split("\n\n", 1)[-1].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
