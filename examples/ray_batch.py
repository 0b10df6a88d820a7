"""Run an OpenAI Batch file on Ray Data with chatplug: one JSON line per result.

    pip install ".[ray]"        # in the chatplug checkout
    python examples/ray_batch.py requests.jsonl results/ --actors 4 --concurrency 16 --qps 5

On a cluster, submit it as a job (the providers' settings travel as environment
variables; the input and output paths must be reachable from every node, e.g.
s3:// or a shared file system):

    ray job submit --working-dir examples \
        --runtime-env-json '{"env_vars": {"CHATPLUG_OPENAI_API_KEY": "..."}}' \
        -- python ray_batch.py s3://bucket/requests.jsonl s3://bucket/results/ --actors 8

Each output row has custom_id, response (the chat.completion body or null),
error ({code, message} or null), provider and usage.  See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import os

import ray
import ray.data

from chatplug.ray import ChatCompletions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("input", help="the batch file (JSONL; a path or URI Ray can read)")
    parser.add_argument("output", help="a directory for the result files (JSONL)")
    parser.add_argument("--actors", type=int, default=2, help="chatplug actors (default 2)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="requests in flight per actor (default 8)")
    parser.add_argument("--qps", type=float, default=None,
                        help="requests started per second, per actor")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per batch")
    parser.add_argument("-p", "--provider", help="provider for rows without body.model")
    parser.add_argument("-m", "--model", help="model for rows without body.model")
    args = parser.parse_args(argv)

    if os.environ.get("RAY_ADDRESS"):
        ray.init()  # `ray job submit` (or an explicit address): join that cluster
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        requests = ray.data.read_json(args.input)
        results = requests.map_batches(
            ChatCompletions,
            fn_constructor_kwargs={"provider": args.provider, "model": args.model,
                                   "concurrency": args.concurrency, "qps": args.qps},
            compute=ray.data.ActorPoolStrategy(size=args.actors),
            batch_size=args.batch_size,
            num_cpus=0.5,  # an actor mostly waits on the network; leave CPUs for reading
        ).materialize()  # computed once: written and counted below
        results.write_json(args.output)
        total = results.count()
        failed = results.filter(lambda row: row["error"] is not None).count()
    finally:
        ray.shutdown()
    print(f"{total} results, {failed} errors, in {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
