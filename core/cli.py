"""The ``chatplug`` command: list providers, show one, chat.

Expected failures print one line on stderr and exit 1 (2 for usage errors);
Ctrl-C exits 130 after closing the stream.  Only this module talks to the
terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ChatplugError

if TYPE_CHECKING:
    from .provider import Provider
    from .registry import Registry

__all__ = ["main"]

DEFAULT_PROVIDER = "GravityEngine"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A malformed command line (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="chatplug",
        description="Chat with any installed chat-completion provider.",
    )
    parser.add_argument("--version", action="version", version=f"chatplug {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "providers", help="list providers (or show one) and plugins that failed to load",
        description="List the installed providers, or show one with its parameters.",
    )
    listing.add_argument("name", nargs="?", metavar="NAME", help="show this provider in detail")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    chat = commands.add_parser(
        "chat", help="send a prompt and print the reply as it streams",
        description="Send PROMPT (or standard input) and print the reply as it arrives.",
    )
    chat.add_argument("prompt", nargs="?", metavar="PROMPT",
                      help="the prompt; '-' or nothing reads standard input")
    chat.add_argument("-p", "--provider", default=DEFAULT_PROVIDER,
                      help=f"provider name (default {DEFAULT_PROVIDER})")
    chat.add_argument("-m", "--model", help="model name (default: the provider's first)")
    chat.add_argument("-s", "--system", help="a system message sent before the prompt")
    chat.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                      help="a provider parameter, converted to its declared type (repeatable)")
    chat.add_argument("--no-stream", action="store_true",
                      help="wait for the whole reply instead of streaming it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    from . import registry

    try:
        if args.command == "providers":
            return _providers(registry, args.name, args.json, sys.stdout)
        return _chat(registry, args, sys.stdin, sys.stdout)
    except UsageError as exc:
        print(f"chatplug: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ChatplugError as exc:
        # One line: the headline says what happened, how often it was tried, what to do.
        print(f"chatplug: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`); stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE


# -- providers ---------------------------------------------------------------------


def _auth_state(provider: Provider) -> str:
    if not provider.needs_auth:
        return "no"
    return "key set" if provider.api_key_configured else f"set {provider.api_key_variable}"


def _origin(provider: Provider) -> str:
    if provider.distribution:
        return f"{provider.distribution} {provider.version or ''}".strip()
    return provider.module_name


def _providers(registry: Registry, name: str | None, as_json: bool, out: TextIO) -> int:
    if name is not None:
        provider = registry.get(name)
        if as_json:
            out.write(json.dumps(provider.as_dict(), indent=2, ensure_ascii=False) + "\n")
        else:
            _show(provider, out)
        return 0
    providers = registry.providers()
    errors = registry.errors
    if as_json:
        payload = {"providers": [p.as_dict() for p in providers], "errors": errors}
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        return 0
    rows = [("NAME", "MODELS", "STREAM", "AUTH", "URL", "FROM")]
    for p in providers:
        rows.append((
            p.name,
            ", ".join(p.models) if p.models else "(any)",
            "yes" if p.supports_stream else "no",
            _auth_state(p),
            p.url,
            _origin(p),
        ))
    out.write(_table(rows))
    if not providers:
        out.write("No providers are installed.\n")
    if errors:
        out.write("\nFailed to load:\n")
        for entry, reason in sorted(errors.items()):
            out.write(f"  {entry}: {reason}\n")
    return 0


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def _show(provider: Provider, out: TextIO) -> None:
    lines = [
        f"{provider.name}  ({_origin(provider)}, module {provider.module_name})",
        f"  url:     {provider.url}"
        + (f"  (default {provider.default_url})" if provider.url != provider.default_url else ""),
        f"  models:  {', '.join(provider.models) if provider.models else '(any; -m is required)'}",
        f"  stream:  {'yes' if provider.supports_stream else 'no'}",
        f"  auth:    {'yes, ' + _auth_state(provider) if provider.needs_auth else 'no'}",
        f"  params:  {provider.params}",
        "",
    ]
    rows = [("PARAMETER", "TYPE", "DEFAULT")]
    for parameter in provider.parameters:
        default = "(required)" if parameter.required else repr(parameter.default)
        rows.append((parameter.name, parameter.type or "-", default))
    out.write("\n".join(lines) + "\n" + _table(rows))


# -- chat --------------------------------------------------------------------------


def _parse_options(options: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for option in options:
        key, equals, value = option.partition("=")
        key = key.strip()
        if not equals or not key:
            raise UsageError(f"-o expects KEY=VALUE, got {option!r} (e.g. -o temperature=0.2)")
        parsed[key] = value
    return parsed


def _chat(registry: Registry, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    options = _parse_options(args.option)
    provider = registry.get(args.provider)
    converted: dict[str, Any] = provider.parse_options(options)
    prompt = args.prompt
    if prompt is None or prompt == "-":
        prompt = stdin.read().rstrip("\r\n")  # the newline `echo` adds is not part of it
    if not prompt.strip():
        raise UsageError("the prompt is empty; pass PROMPT or pipe it on standard input")
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    if args.no_stream:
        text = provider.create(messages, model=args.model, stream=False, **converted)
        out.write(text if text.endswith("\n") else text + "\n")
        out.flush()
        return 0
    last = "\n"
    with provider.create(messages, model=args.model, stream=True, **converted) as stream:
        for piece in stream:
            out.write(piece)
            out.flush()
            last = piece[-1:] or last
    if last != "\n":
        out.write("\n")
    out.flush()
    return 0
