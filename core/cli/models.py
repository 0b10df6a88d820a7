"""``chatplug models [PROVIDER]``: each provider's declared models and, where it can ask
its server (the ``list_models`` hook), the models the server offers now; the aliases
(``CHATPLUG_MODELS``, chatplug.toml's ``[models]``) after them.

``chatplug models default [NAME]`` shows the default model (and where it is set), or
stores NAME as ``default_model`` in chatplug.toml (``--unset`` removes it);
``CHATPLUG_DEFAULT_MODEL`` wins over the file.

Asking is bounded (5 s, or ``CHATPLUG_TIMEOUT`` if lower) and done for every
provider at once.  When it fails the declared list is shown with a one-line
note on stderr, and the exit status stays 0.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import ChatplugError
from .output import Output, UsageError, in_cli_terms, note, print_json, table
from .providers import providers_of

if TYPE_CHECKING:
    from ..calls.provider import Provider

__all__ = ["add_arguments", "run"]


#: ``chatplug models default [NAME]``: the word that is not a provider's name.
DEFAULT = "default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("provider", nargs="?", metavar="PROVIDER",
                        help="only this provider (default: every one); 'default' shows or "
                             "sets the default model")
    parser.add_argument("name", nargs="?", metavar="NAME",
                        help="with 'default': the model to store as default_model in "
                             "chatplug.toml")
    parser.add_argument("--unset", action="store_true",
                        help="with 'default': remove default_model from chatplug.toml")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _ask(provider: Provider) -> tuple[list[str] | None, str | None]:
    """``(live models, None)``, ``(None, why not)``, or ``(None, None)`` without the hook."""
    if not provider.lists_models:
        return None, None
    try:
        return provider.list_models(), None
    except ChatplugError as exc:
        return None, in_cli_terms(exc, exc.message.splitlines()[0])


def default(args: argparse.Namespace) -> int:
    """Show the default model, or store/remove it in chatplug.toml."""
    from .. import registry
    from ..configfile import load_config, store_default_model

    out = Output()
    if args.name is not None or args.unset:
        if args.name is not None and args.unset:
            raise UsageError("give NAME or --unset, not both")
        if args.name is not None:
            registry.resolve(args.name)  # a name that resolves to nothing is refused
        path = store_default_model(args.name, load_config().path)
        if registry.settings.default_model:
            note(f"CHATPLUG_DEFAULT_MODEL={registry.settings.default_model} is set and wins "
                 f"over {path}")
        out.write(f"{'removed default_model from' if args.unset else 'stored default_model in'}"
                  f" {path}\n")
        return 0
    chosen, origin = registry.default_model, None
    if registry.settings.default_model:
        origin = "CHATPLUG_DEFAULT_MODEL"
    elif chosen is not None:
        origin = str(registry.catalog.config.path)
    target = None
    if chosen is not None:
        resolved, model = registry.resolve(chosen)
        target = resolved.name if model is None else f"{resolved.name}/{model}"
    if args.json:
        print_json({"default_model": chosen, "from": origin, "resolves_to": target}, out)
    elif chosen is None:
        out.write("no default model; set one with `chatplug models default NAME` or "
                  "CHATPLUG_DEFAULT_MODEL\n")
    else:
        out.write(f"{chosen}\t{target}\t(from {origin})\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from .. import registry

    if args.provider == DEFAULT:
        return default(args)
    if args.name is not None or args.unset:
        raise UsageError("NAME and --unset go with `chatplug models default`")
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
    aliases = {} if args.provider else registry.catalog.models()[0]
    for alias, target in aliases.items():
        rows.append(("(alias)", alias, target if isinstance(target, str)
                     else "route: " + ", ".join(target)))
    out.write(table(rows))
    return 0
