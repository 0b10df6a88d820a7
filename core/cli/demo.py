"""``chatplug demo [PROMPT]``: chatplug working end to end, offline, in one command.

chatplug's scripted server starts in this process on a free loopback port and a
paced reply streams from it through the GravityEngine provider over real HTTP,
so a person sees streaming.  Nothing is logged, nothing is left running.
"""

from __future__ import annotations

import argparse

from .output import Output, note
from .terminal import Status, is_terminal

__all__ = ["add_arguments", "run"]

DEFAULT_PROMPT = "Hello! What is chatplug?"
PACE = 0.06


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT, metavar="PROMPT",
                        help=f"what to say (default {DEFAULT_PROMPT!r})")
    parser.add_argument("--pace", type=float, default=PACE, metavar="SECONDS",
                        help=f"seconds between the pieces of the reply (default {PACE})")


def reply_text(prompt: str, url: str) -> str:
    return (f"You said: {prompt} — This reply comes from chatplug's scripted server at {url}, "
            "streamed piece by piece through the GravityEngine provider over real HTTP, "
            "the way a real chat server streams. Next: point CHATPLUG_GRAVITYENGINE_URL or "
            "CHATPLUG_OPENAI_URL at a real server and run `chatplug chat`.")


def run(args: argparse.Namespace) -> int:
    import sys

    from .. import registry
    from ..testing.server import ScriptedServer
    from .exchange import report, send

    pace = min(max(args.pace, 0.0), 1.0)
    provider = registry.get("GravityEngine")
    with ScriptedServer(lifetime=300) as server:
        server.add(text=reply_text(args.prompt, server.url), piece_delay=pace)
        note(f"demo: GravityEngine -> a local scripted server on {server.url} (offline)")
        out = Output()
        outcome = send(provider, [{"role": "user", "content": args.prompt}], model=None,
                       params={}, call={"timeout": 60, "url": server.url}, stream=True,
                       as_json=False, out=out,
                       status=Status("the demo server", enabled=is_terminal(sys.stderr)))
        report(outcome, out, usage=False)
    if outcome.error is not None:
        raise outcome.error
    return 130 if outcome.stopped else 0
