"""``chatplug gateway``: what the gateway keeps for a team.

``chatplug gateway keys ...`` (virtual keys: create, list, revoke; ``gateway_keys``) and
``chatplug gateway usage ...`` (the usage ledger's report; ``gateway_usage``).  Each
subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int``, like the
top-level commands; both are imported only under ``chatplug gateway``.  Both act on the
gateway's database (``CHATPLUG_SERVER_DATABASE_URL``, else ``gateway.db`` in chatplug's
data directory).
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

__all__ = ["SUBCOMMANDS", "add_arguments", "run"]

#: name -> (module, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "keys": ("chatplug.cli.gateway_keys",
             "virtual keys with limits and budgets: create, list, revoke"),
    "usage": ("chatplug.cli.gateway_usage",
              "what was spent: the usage ledger by key, model, provider or day"),
}


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(SUBCOMMANDS[name][0])
    except ModuleNotFoundError as exc:
        if exc.name != SUBCOMMANDS[name][0]:
            raise
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND",
                                       required=True)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        module = _load(name)  # both are small; a missing one is left out
        if module is not None:
            module.add_arguments(subparsers.add_parser(name, help=help_text,
                                                       description=help_text))


def run(args: argparse.Namespace) -> int:
    module = _load(args.gateway_command)
    assert module is not None  # argparse offered only the subcommands that loaded
    status: int = module.run(args)
    return status
