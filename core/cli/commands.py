"""The ``chatplug`` command line: the list of commands, and ``main``.

Each command is a module with ``add_arguments(parser)`` and ``run(args) -> int``,
named once in :data:`COMMANDS`; only the module of the command being run is
imported, so ``chatplug providers`` never pays for the chat or the logs.  A
command whose module is not installed (an optional part) is left out.

Expected failures print one line on stderr and exit 1 (2 for usage errors; ``chatplug``
alone prints the help and exits 2); Ctrl-C exits 130 after closing the stream.  Every
command first reports misspelled ``CHATPLUG_*`` variables on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from ..errors import ChatplugError
from .output import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    OutputError,
    UsageError,
    error_line,
    note,
)

__all__ = ["COMMANDS", "Command", "main"]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, the module implementing it, its one-line help."""

    name: str
    module: str
    help: str
    description: str = ""
    #: Left out (hidden) when its module is not installed.
    optional: bool = False

    def available(self) -> bool:
        if not self.optional:
            return True
        import importlib.util

        try:
            return importlib.util.find_spec(self.module) is not None
        except ImportError:
            return False

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


#: Every command, in the order ``chatplug --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("chat", "chatplug.cli.chat",
            "chat: one prompt, or a conversation on a terminal",
            "Send PROMPT (or standard input) and print the reply as it streams. With no "
            "prompt on a terminal (or -i), chat interactively: the conversation is kept."),
    Command("providers", "chatplug.cli.providers",
            "list providers (or show one) and plugins that failed to load",
            "List the installed providers, or show one with its parameters and where each "
            "of its settings comes from."),
    Command("models", "chatplug.cli.models",
            "list the models of a provider: declared, and as its server lists them",
            "List each provider's declared models and, where the provider can ask its "
            "server, the models the server offers now."),
    Command("logs", "chatplug.cli.logs",
            "list, search and show the logged exchanges",
            "List the latest exchanges logged by chatplug chat, search them, show one."),
    Command("keys", "chatplug.cli.keys",
            "save API keys (keys set PROVIDER), list their names, show the file",
            "Manage the keys file: keys saved there are used when no environment variable "
            "or .env entry sets the key."),
    Command("demo", "chatplug.cli.demo",
            "a streamed reply from a local scripted server, offline",
            "Start chatplug's scripted server on a free loopback port and stream a paced "
            "reply from it through the GravityEngine provider over real HTTP."),
    Command("batch", "chatplug.cli.batch", "run many prompts from a file"),
    Command("serve", "chatplug.cli.serve", "serve the providers over an OpenAI API"),
    Command("gateway", "chatplug.cli.gateway",
            "the gateway's virtual keys and usage ledger (keys, usage)",
            "Manage the gateway's virtual keys (limits, budgets, expiry) and report what "
            "was spent, from its database."),
)


def _requested(argv: Sequence[str]) -> Command | None:
    """The command named on the command line (the first word that is not an option)."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return next((c for c in COMMANDS if c.name == word and c.available()), None)


def _parser(chosen: Command | None) -> tuple[argparse.ArgumentParser, ModuleType | None]:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="chatplug",
        description="Chat with any installed chat-completion provider.",
    )
    parser.add_argument("--version", action="version", version=f"chatplug {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    module = None
    for command in COMMANDS:
        # Running one command, the others are not looked for (an optional one costs a
        # lookup); for --help and for a mistyped command, every available one is listed.
        if command is not chosen and (chosen is not None or not command.available()):
            continue
        sub = subparsers.add_parser(command.name, help=command.help,
                                    description=command.description or command.help)
        if command is chosen:
            module = command.load()
            module.add_arguments(sub)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser, module = _parser(_requested(arguments))
    if not arguments:
        # A first try: what there is to do, on stdout; exit 2 as a command is needed.
        parser.print_help()
        return EXIT_USAGE
    args = parser.parse_args(arguments)
    assert module is not None  # argparse refused any other command
    try:
        from .environment import report_unknown_variables

        report_unknown_variables()
        status: int = module.run(args)
        _flush_stdout()
        return status
    except UsageError as exc:
        note(f"error: {exc}")
        return EXIT_USAGE
    except ChatplugError as exc:
        # One line: the headline says what happened, how often it was tried, what to do.
        note(f"error: {error_line(exc)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`); stop quietly, as other tools do.
        _silence_stdout()
        return EXIT_FAILURE
    except OutputError as exc:
        note(f"error: {exc}")
        _silence_stdout()
        return EXIT_FAILURE


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
