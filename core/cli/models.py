"""``chatplug models [PROVIDER]``: each provider's declared models and, where it can ask
its server (the ``list_models`` hook), the models the server offers now.

Asking is bounded (5 s, or ``CHATPLUG_TIMEOUT`` if lower) and done for every
provider at once.  When it fails the declared list is shown with a one-line
note on stderr, and the exit status stays 0.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import ChatplugError
from .output import Output, in_cli_terms, note, print_json, table
from .providers import providers_of

if TYPE_CHECKING:
    from ..calls.provider import Provider

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("provider", nargs="?", metavar="PROVIDER",
                        help="only this provider (default: every one)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _ask(provider: Provider) -> tuple[list[str] | None, str | None]:
    """``(live models, None)``, ``(None, why not)``, or ``(None, None)`` without the hook."""
    if not provider.lists_models:
        return None, None
    try:
        return provider.list_models(), None
    except ChatplugError as exc:
        return None, in_cli_terms(exc, exc.message.splitlines()[0])


def run(args: argparse.Namespace) -> int:
    from .. import registry

    providers = providers_of(registry, args.provider)
    registry.settings  # noqa: B018  # a bad setting fails here, once, not in every thread
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(providers))),
                            thread_name_prefix="chatplug-models") as pool:
        answers = list(pool.map(_ask, providers))
    out = Output()
    entries: list[dict[str, Any]] = []
    for provider, (live, failure) in zip(providers, answers, strict=True):
        if failure is not None:
            note(f"could not ask {provider.name}'s server for its models ({failure}); "
                 "showing the declared list")
        entries.append({"provider": provider.name, "declared": list(provider.models),
                        "live": live, "error": failure})
    if args.json:
        print_json({"models": entries}, out)
        return 0
    rows = [("PROVIDER", "MODEL", "LISTED")]
    for entry in entries:
        declared, live = entry["declared"], entry["live"] or []
        for name in dict.fromkeys([*declared, *live]):
            where = [label for label, names in (("declared", declared), ("server", live))
                     if name in names]
            rows.append((entry["provider"], name, ", ".join(where)))
        if not declared and not live:
            rows.append((entry["provider"], "(any; name one with -m)", "-"))
    out.write(table(rows))
    return 0
