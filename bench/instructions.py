"""One client's calls, for counting instructions: ``python -m bench.instructions KIND URL
MODE N``.

Run it under ``valgrind --tool=callgrind`` (or any instruction counter) twice with two
values of ``N`` and divide the difference of the counts by the difference of the ``N``:
start-up, imports and the warm-up cancel out, and the machine's load does not change
the result (see bench/README.md).  ``MODE`` is ``complete`` (``N`` non-streamed calls of
a 128-character reply, the latency figure's) or ``stream`` (one stream of ``N``
4-character pieces, the throughput figure's).  Prints the wall time too, for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bench import scenarios
from bench.clients import CLIENTS, make_client
from bench.worker import SMALL_REPLY, TOKEN_LENGTH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("url", help="the bench server's base URL")
    parser.add_argument("mode", choices=("complete", "stream"))
    parser.add_argument("count", type=int)
    args = parser.parse_args(argv)
    os.environ["CHATPLUG_PLUGINS"] = ""  # as the workers: chatplug's own figures
    client = make_client(args.client, args.url)
    try:
        if args.mode == "complete":
            client.complete(SMALL_REPLY)
            started = time.perf_counter()
            for _ in range(args.count):
                client.complete(SMALL_REPLY)
            done = args.count
        else:
            for _ in client.stream(scenarios.reply(100, TOKEN_LENGTH)):
                pass
            started = time.perf_counter()
            done = sum(1 for _ in client.stream(scenarios.reply(args.count, TOKEN_LENGTH)))
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    if done != args.count:
        print(f"{done} of {args.count}", file=sys.stderr)
        return 1
    print(json.dumps({"client": args.client, "mode": args.mode, "count": done,
                      "seconds": elapsed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
