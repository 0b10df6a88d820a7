"""The whole plugin surface of chatplug, readable in one screen.

A provider is a module (or any object) registered under the entry-point group
``chatplug.providers``; the entry point's name is the provider's name.  Next
to the metadata attributes ``url``, ``model``, ``supports_stream`` and
``needs_auth`` it implements :func:`create_completion` with ``@hookimpl``.

As everywhere in pluggy, an implementation names only the arguments it uses.
Provider-specific parameters are extra keyword parameters **with defaults**
(``temperature: float = 0.7``); they are the provider's user parameters,
validated against their type hints before anything is sent.  An implementation
that names ``params`` receives all of them at once, validated, as one mapping
(what it forwards with ``**params`` can never be left out by mistake).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .events import Event, Usage
    from .transport.client import HTTPClient

__all__ = [
    "CALL_OPTIONS",
    "CORE_ARGUMENTS",
    "INJECTED_ARGUMENTS",
    "OBSERVER_HOOKS",
    "PROJECT_NAME",
    "RESERVED_NAMES",
    "hookimpl",
    "hookspec",
]

OBSERVER_HOOKS = ("chatplug_on_request", "chatplug_on_response", "chatplug_on_error",
                  "chatplug_on_retry")

PROJECT_NAME = "chatplug"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: The arguments every completion function takes, in this order.
CORE_ARGUMENTS = ("model", "messages", "stream")
#: Arguments the registry supplies itself; they are never user parameters.
INJECTED_ARGUMENTS = frozenset({"url", "api_key", "http", "params"})
#: Keyword arguments of ``create()``/``complete()`` that are chatplug's own call
#: options, never a provider's parameters.
CALL_OPTIONS = frozenset({"timeout", "max_retries", "api_key", "url", "headers", "extra_body"})
#: Every name a provider's own parameter may not take.
RESERVED_NAMES = frozenset(CORE_ARGUMENTS) | INJECTED_ARGUMENTS | CALL_OPTIONS


# Called on one provider's own implementation only, never broadcast.
@hookspec
def create_completion(  # type: ignore[empty-body]
    model: str,
    messages: list[dict[str, Any]],
    stream: bool,
    url: str,
    api_key: str | None,
    http: HTTPClient,
    params: Mapping[str, Any],
) -> Iterator[str | Event]:
    """Yield the reply's text piece by piece, and the events of :mod:`chatplug.events`
    (usage, finish reason, tool-call fragments, reasoning, id and model) where the
    server reports them.

    :param model: the model to use, already checked against the provider's list.
    :param messages: validated chat messages (a private copy): roles ``system``,
        ``developer``, ``user``, ``assistant``, ``tool``; content a string or a list
        of parts; ``tool_calls`` and ``tool_call_id`` as OpenAI shapes them.
    :param stream: whether the caller streams; a provider may stream regardless.
    :param url: the provider's effective base URL (setting, else module ``url``).
    :param api_key: the provider's key in plain text, or ``None``; never log it.
    :param http: the transport bound to this call (timeouts, typed errors,
        redaction of the key); see :class:`chatplug.HTTPClient`.
    :param params: every user parameter the implementation declares, by name: the
        caller's validated value, else the declared default (read-only).

    Raise :class:`chatplug.ChatplugError` subclasses for failures; anything
    else escaping a provider is reported as a bug in that plugin.
    """


# Optional; called on one provider's own implementation only, like create_completion.
@hookspec
def list_models(url: str, api_key: str | None, http: HTTPClient) -> list[str]:  # type: ignore[empty-body]
    """The names of the models the provider's server offers now (``chatplug models``,
    :meth:`chatplug.Provider.list_models`).  Implement it where the server can say,
    e.g. with :func:`chatplug.wire.openai.list_models`.

    :param url: the provider's effective base URL.
    :param api_key: the provider's key in plain text, or ``None``; never log it.
    :param http: the transport bound to this request (a short deadline, typed errors,
        redaction of the key).

    Raise :class:`chatplug.ChatplugError` subclasses for failures.
    """


# Observers (entry-point group ``chatplug.observers``) see every completion: for
# logging, metrics, caching.  They never see the key or the messages' text.  An
# observer that raises is logged and ignored; it cannot break a completion.


@hookspec
def chatplug_on_request(
    provider: str, model: str, stream: bool, request_id: str, route: str | None
) -> None:
    """A completion is about to be sent (after validation passed).  ``route`` is the
    route's name when a route makes the call (each of its attempts is heard, with
    one ``request_id``), else ``None``."""


@hookspec
def chatplug_on_response(
    provider: str,
    model: str,
    request_id: str,
    duration_s: float,
    first_piece_s: float | None,
    pieces: int,
    characters: int,
    attempts: int,
    outcome: str,
    finish_reason: str | None,
    usage: Usage | None,
    route: str | None,
) -> None:
    """A completion ended well: ``outcome`` is ``"complete"``, or ``"closed"`` when the
    caller stopped reading a stream early.  ``finish_reason`` says why the reply
    ended (``"length"``: cut by ``max_tokens``), ``usage`` the token counts, if
    the server reported them."""


@hookspec
def chatplug_on_retry(
    provider: str,
    model: str,
    request_id: str,
    attempt: int,
    max_attempts: int,
    delay_s: float,
    error: Exception,
    route: str | None,
) -> None:
    """Attempt ``attempt`` failed with ``error`` (retryable); the next of at most
    ``max_attempts`` starts in ``delay_s`` seconds."""


@hookspec
def chatplug_on_error(
    provider: str,
    model: str,
    request_id: str,
    duration_s: float,
    attempts: int,
    error: Exception,
    route: str | None,
) -> None:
    """A completion failed with ``error`` (a :class:`chatplug.ChatplugError`)."""
