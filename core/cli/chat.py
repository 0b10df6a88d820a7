"""``chatplug chat``: one prompt (the argument or standard input), or, with no prompt on a
terminal (or ``-i``), an interactive conversation (:mod:`chatplug.cli.interactive`).

``-c`` continues the latest logged conversation and ``--cid`` a given one; every
exchange is logged unless ``--no-log`` or ``CHATPLUG_LOG=off``.  Several ``-p``
make an ad-hoc route (tried in order) where the registry can build one.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ..hooks import RESERVED_NAMES
from ..naming import env_name
from .output import EXIT_INTERRUPTED, Output, UsageError, seconds
from .session import Conversation, Logbook, Session, logging_enabled
from .terminal import RetryAnnouncer, is_terminal

if TYPE_CHECKING:
    from ..plugins.registry import Registry

__all__ = ["DEFAULT_PROVIDER", "add_arguments", "default_provider", "default_target", "run"]

DEFAULT_PROVIDER = "GravityEngine"
#: The provider ``chat`` prefers among those with a key, when GravityEngine is not chosen.
KEYED_DEFAULT = "OpenAI"

#: What to use instead of ``-o NAME=...`` for chatplug's own names.
OPTION_HINTS = {
    "model": "choose the model with -m MODEL",
    "stream": "replies stream by default; --no-stream waits for the whole reply",
    "messages": "give the prompt as PROMPT or on standard input, a system message with -s",
    "timeout": "bound the call with --timeout SECONDS",
    "api_key": "save the key with `chatplug keys set PROVIDER`, or set CHATPLUG_<NAME>_API_KEY",
    "url": "set CHATPLUG_<NAME>_URL",
    "max_retries": "set CHATPLUG_MAX_RETRIES",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", metavar="PROMPT",
                        help="the prompt; '-' or nothing reads standard input (on a terminal, "
                             "nothing starts an interactive chat)")
    parser.add_argument("-p", "--provider", action="append", metavar="PROVIDER",
                        help=f"provider name, or Provider/model (default {DEFAULT_PROVIDER} "
                             f"when its URL is set or no other provider has a key, else "
                             f"the one with a key, {KEYED_DEFAULT} first); repeated: an "
                             "ad-hoc route, tried in order")
    parser.add_argument("-m", "--model",
                        help="model name: gpt-4o-mini, Provider/model or an alias; without "
                             "-p it finds its provider (default: the default model, else "
                             "the provider's first)")
    parser.add_argument("-s", "--system", help="a system message sent before the prompt")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a provider parameter, converted to its declared type (repeatable)")
    parser.add_argument("--no-stream", action="store_true",
                        help="wait for the whole reply instead of streaming it")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="chat interactively (the default on a terminal without PROMPT)")
    parser.add_argument("-c", "--continue", dest="continue_", action="store_true",
                        help="continue the latest logged conversation")
    parser.add_argument("--cid", metavar="ID", help="continue the logged conversation ID")
    parser.add_argument("--json", action="store_true",
                        help="print the completion as JSON (text, finish_reason, usage, ...)")
    parser.add_argument("--usage", action="store_true", help="print the token usage on stderr")
    parser.add_argument("--timeout", type=seconds(86400), metavar="SECONDS",
                        help="total seconds the call may take, retries included "
                             "(default CHATPLUG_TIMEOUT)")
    parser.add_argument("--no-log", action="store_true",
                        help="do not log this exchange (CHATPLUG_LOG=off: never)")


def parse_options(options: list[str]) -> dict[str, str]:
    """``-o KEY=VALUE`` texts as a dict.

    :raises UsageError: not ``KEY=VALUE``, or a name chatplug sets otherwise (``model``...).
    """
    parsed: dict[str, str] = {}
    for option in options:
        key, equals, value = option.partition("=")
        key = key.strip()
        if not equals or not key:
            raise UsageError(f"-o expects KEY=VALUE, got {option!r} (e.g. -o temperature=0.2)")
        if key in RESERVED_NAMES:
            hint = OPTION_HINTS.get(key, "it is chatplug's own, not a provider parameter")
            raise UsageError(f"-o {key}=...: {key} is not a provider parameter; {hint}")
        parsed[key] = value
    return parsed


def resolve_target(registry: Registry, names: list[str], model: str | None
                   ) -> tuple[Any, str | None, str | None]:
    """``(target, model, route name)`` for the ``-p`` given: a provider, or a route.

    :raises UsageError: a model named twice, or a route this registry cannot build.
    :raises ProviderNotFoundError: no such provider.
    """
    if len(names) == 1:
        provider, named = registry.resolve(names[0])
        if named and model and named != model:
            raise UsageError(f"-p {names[0]} names the model {named!r} and -m names {model!r}; "
                             "name it once")
        return provider, model or named, None
    route = getattr(registry, "route", None)
    if route is None:
        raise UsageError("several -p make a route, which this version of chatplug cannot "
                         "build; name one provider")
    target = route(names)  # -m is the model of the entries that name none
    return target, model, str(getattr(target, "name", "+".join(names)))


def default_target(registry: Registry, model: str | None) -> tuple[Any, str | None]:
    """What answers ``chat`` without ``-p``: ``-m``'s name as the registry resolves it
    (``gpt-4o-mini``, an alias...; a name it does not know is a model of
    :func:`default_provider`), else the default model when one is configured, else
    :func:`default_provider`'s default model.

    :raises AmbiguousModelError: ``-m`` names a model several providers serve.
    :raises ConfigurationError: the aliases or chatplug.toml are malformed.
    """
    from ..errors import AmbiguousModelError, ProviderNotFoundError

    if model is not None:
        try:
            return registry.resolve(model)
        except AmbiguousModelError:
            raise
        except ProviderNotFoundError:
            return registry.resolve(default_provider(registry))[0], model
    if registry.default_model is not None:
        return registry.resolve(None)
    return registry.resolve(default_provider(registry))


def default_provider(registry: Registry) -> str:
    """Who answers ``chat`` without ``-p``: GravityEngine (a public service) only when its
    URL is configured or no other provider has a key; else the provider that has one,
    OpenAI first.  A configured default model comes first (:func:`default_target`)."""
    if os.environ.get(env_name(DEFAULT_PROVIDER, "URL"), "").strip():
        return DEFAULT_PROVIDER  # the environment wins: no need to read the settings
    providers = {provider.name: provider for provider in registry.providers()}
    gravity = providers.get(DEFAULT_PROVIDER)
    if gravity is not None and gravity.url != gravity.default_url:
        return DEFAULT_PROVIDER
    keyed = [name for name, provider in providers.items()
             if name != DEFAULT_PROVIDER and provider.api_key_configured]
    if not keyed:
        return DEFAULT_PROVIDER
    return KEYED_DEFAULT if KEYED_DEFAULT in keyed else keyed[0]


def _converted(target: Any, options: dict[str, str]) -> dict[str, Any]:
    if not options:
        return {}
    parse = getattr(target, "parse_options", None)
    if parse is None:
        raise UsageError("-o goes with a single provider (-p NAME)")
    converted: dict[str, Any] = parse(options)
    return converted


def read_prompt(prompt: str | None) -> str:
    """The prompt: the argument, else standard input (without the newline ``echo`` adds).

    :raises UsageError: undecodable or empty.
    """
    if prompt is None or prompt == "-":
        try:
            prompt = sys.stdin.read().rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"standard input is not {exc.encoding} text ({exc.reason} at byte {exc.start}); "
                "convert it, or set PYTHONIOENCODING to its encoding"
            ) from None
    check_text("the prompt", prompt)
    if not prompt.strip():
        raise UsageError("the prompt is empty; pass PROMPT or pipe it on standard input")
    return prompt


def check_text(label: str, text: str) -> None:
    """:raises UsageError: ``text`` holds bytes the terminal could not decode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{label} contains bytes that are not valid text in this "
                         "terminal's encoding") from None


def run(args: argparse.Namespace) -> int:
    from .. import registry

    if args.continue_ and args.cid:
        raise UsageError("-c continues the latest conversation, --cid a given one; not both")
    interactive = args.interactive or (args.prompt is None and is_terminal(sys.stdin))
    if interactive and args.json:
        raise UsageError("--json prints one completion; it does not go with an interactive chat")
    options = parse_options(args.option)
    check_text("the system message", args.system or "")
    logbook = Logbook(enabled=logging_enabled(args.no_log))
    if args.continue_ or args.cid:
        conversation = logbook.conversation(args.cid)
        if args.system is not None:
            conversation.system = args.system
    else:
        conversation = Conversation.new(args.system)
    if args.provider:
        target, model, route = resolve_target(registry, args.provider, args.model)
    elif conversation.provider:  # going on with whoever answered last
        target, model, route = resolve_target(registry, [conversation.provider],
                                              args.model or conversation.model)
    else:
        target, model = default_target(registry, args.model)
        route = None
    if route is not None:
        _say_route_skips()
    session = Session(target, conversation, logbook, model=model,
                      params=_converted(target, options), timeout=args.timeout,
                      stream=not (args.no_stream or args.json), as_json=args.json,
                      usage=args.usage, route=route, out=Output(),
                      announce=not args.provider and is_terminal(sys.stderr))
    if is_terminal(sys.stderr):
        session.announcer = _announcer(registry)
    if interactive:
        from .interactive import chat

        return chat(session, first=args.prompt)
    outcome = session.turn(read_prompt(args.prompt))
    if outcome.error is not None:
        raise outcome.error
    return EXIT_INTERRUPTED if outcome.stopped else 0


def _say_route_skips() -> None:
    """A route logs which entry it skips and why (no key...); say it on stderr."""
    import logging

    from .output import note

    class Note(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            note(record.getMessage())

    logging.getLogger("chatplug.routes").addHandler(Note(logging.WARNING))


def _announcer(registry: Registry) -> RetryAnnouncer | None:
    """Retries announced on the terminal, through the observer hook."""
    from ..errors import PluginLoadError

    announcer = RetryAnnouncer()
    try:
        registry.register_observer(announcer, name="chatplug-cli")
    except PluginLoadError:
        return None  # blocked by the plugin controls: no announcements, the chat goes on
    return announcer

