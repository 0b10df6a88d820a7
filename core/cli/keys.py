"""``chatplug keys``: ``set PROVIDER`` saves a key (typed without echo on a terminal, or one
line of standard input), ``remove PROVIDER`` forgets it, ``list`` prints the provider names
that have one (never any part of a key), ``path`` prints where the keys file is.

Saved keys are used when neither the environment nor ``.env`` sets one.
"""

from __future__ import annotations

import argparse
import os

from .output import Output, UsageError, note
from .terminal import read_secret

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("set", "remove", "list", "path"),
                        help="set PROVIDER, remove PROVIDER, list, or path")
    parser.add_argument("provider", nargs="?", metavar="PROVIDER",
                        help="with set and remove: the provider's name")


def run(args: argparse.Namespace) -> int:
    from .. import keys

    out = Output()
    if args.action == "path":
        out.write(f"{keys.keys_path()}\n")
        return 0
    if args.action == "list":
        out.write("".join(f"{name}\n" for name in keys.key_names()))
        return 0
    if args.provider is None:
        raise UsageError(f"keys {args.action} takes the provider's name, e.g. "
                         f"`chatplug keys {args.action} OpenAI`")
    from .. import registry

    name = registry.get(args.provider).name  # a typo is caught, with the closest name
    if args.action == "remove":
        if not keys.remove_key(name):
            raise UsageError(f"no key is saved for {name} in {keys.keys_path()}")
        note(f"removed the key for {name} from {keys.keys_path()}")
        return 0
    try:
        secret = read_secret(f"Key for {name} (not shown): ")
    except EOFError:
        raise UsageError("no key on standard input; nothing was saved") from None
    path = keys.save_key(name, secret)
    note(f"saved the key for {name} in {path}")
    from ..naming import env_name

    variable = env_name(name, "API_KEY")
    if os.environ.get(variable, "").strip():
        note(f"note: {variable} is set in the environment and is used instead")
    return 0
