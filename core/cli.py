"""The ``chatplug`` command: list providers, show one, check them, chat.

Expected failures print one line on stderr and exit 1 (2 for usage errors);
Ctrl-C exits 130 after closing the stream.  ``chatplug providers --check``
exits 1 when any provider it probed is failing ("auth needed" is a setting to
make, not a failure).  Only this module talks to the terminal.
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
    from .calls.provider import Provider
    from .plugins.registry import Registry

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
    listing.add_argument("--check", action="store_true",
                         help="probe each provider's endpoint (no key is sent); exit 1 if any "
                              "is failing")
    listing.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                         help="with --check: seconds to connect and to get an answer "
                              "(default 5)")

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

    from .batch import command as batch_command

    batch_command.add_arguments(commands.add_parser(
        "batch", help=batch_command.HELP, description=batch_command.DESCRIPTION))
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 60], got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    from . import registry

    try:
        if args.command == "batch":
            from .batch import command as batch_command

            return batch_command.run(args)
        if args.command == "providers":
            if args.check:
                return _check(registry, args.name, args.json, args.timeout, sys.stdout)
            if args.timeout is not None:
                raise UsageError("--timeout goes with --check")
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
        payload = {
            "providers": [p.as_dict() for p in providers],
            "observers": [o.as_dict() for o in registry.observers()],
            "errors": errors,
            "disabled": sorted(registry.disabled),
            "not_allowed": registry.not_allowed,
        }
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
    _plugin_sections(registry, out)
    if errors:
        out.write("\nFailed to load:\n")
        for entry, reason in sorted(errors.items()):
            out.write(f"  {entry}: {reason}\n")
    return 0


def _named(name: str, distribution: str | None, version: str | None = None) -> str:
    origin = " ".join(part for part in (distribution, version) if part)
    return f"{name} ({origin})" if origin else name


def _plugin_sections(registry: Registry, out: TextIO) -> None:
    """Observers, and the plugins the controls kept out (reported, not errors)."""
    sections = [
        ("Observers", [_named(o.name, o.distribution, o.version)
                       for o in registry.observers()]),
        ("Disabled (CHATPLUG_DISABLED_PROVIDERS)",
         [_named(n, d) for n, d in sorted(registry.disabled.items())]),
        ("Not in CHATPLUG_PLUGINS",
         [_named(n, d) for n, d in sorted(registry.not_allowed.items())]),
    ]
    for title, names in sections:
        if names:
            out.write(f"\n{title}: {', '.join(names)}\n")


def _check(registry: Registry, name: str | None, as_json: bool, timeout: float | None,
           out: TextIO) -> int:
    from .calls.probe import DEFAULT_TIMEOUT, FAILING, probe_all

    providers = [registry.get(name)] if name is not None else registry.providers()
    results = probe_all(providers, registry.transport,
                        timeout=timeout if timeout is not None else DEFAULT_TIMEOUT)
    if as_json:
        payload = {"checks": [r.as_dict() for r in results]}
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        rows = [("NAME", "STATUS", "LATENCY", "URL", "DETAIL")]
        for r in results:
            latency = f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "-"
            rows.append((r.provider, r.status, latency, r.url, r.detail))
        out.write(_table(rows))
    return EXIT_FAILURE if any(r.status == FAILING for r in results) else 0


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
        try:
            prompt = stdin.read().rstrip("\r\n")  # the newline `echo` adds is not part of it
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"standard input is not {exc.encoding} text ({exc.reason} at byte {exc.start}); "
                "convert it, or set PYTHONIOENCODING to its encoding"
            ) from None
    for label, text in (("the prompt", prompt), ("the system message", args.system or "")):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{label} contains bytes that are not valid text in this "
                             "terminal's encoding") from None
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
