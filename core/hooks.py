"""The whole plugin surface of chatplug, readable in one screen.

A provider is a module (or any object) registered under the entry-point group
``chatplug.providers``; the entry point's name is the provider's name.  Next
to the metadata attributes ``url``, ``model``, ``supports_stream`` and
``needs_auth`` it implements :func:`create_completion` with ``@hookimpl``.

As everywhere in pluggy, an implementation names only the arguments it uses.
Provider-specific parameters are extra keyword parameters **with defaults**
(``temperature: float = 0.7``); they are the provider's user parameters,
validated against their type hints before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .transport.client import HTTPClient

__all__ = ["INJECTED_ARGUMENTS", "PROJECT_NAME", "hookimpl", "hookspec"]

OBSERVER_HOOKS = ("chatplug_on_request", "chatplug_on_response", "chatplug_on_error")

PROJECT_NAME = "chatplug"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Arguments the registry supplies itself; they are never user parameters.
INJECTED_ARGUMENTS = frozenset({"url", "api_key", "http"})


@hookspec(firstresult=True)
def create_completion(  # type: ignore[empty-body]
    model: str,
    messages: list[dict[str, str]],
    stream: bool,
    url: str,
    api_key: str | None,
    http: HTTPClient,
) -> Iterator[str]:
    """Yield the reply's text piece by piece.

    :param model: the model to use, already checked against the provider's list.
    :param messages: validated ``{"role", "content"}`` dicts (a private copy).
    :param stream: whether the caller streams; a provider may stream regardless.
    :param url: the provider's effective base URL (setting, else module ``url``).
    :param api_key: the provider's key in plain text, or ``None``; never log it.
    :param http: the transport bound to this call (timeouts, typed errors,
        redaction of the key); see :class:`chatplug.HTTPClient`.

    Raise :class:`chatplug.ChatplugError` subclasses for failures; anything
    else escaping a provider is reported as a bug in that plugin.
    """


# Observers (entry-point group ``chatplug.observers``) see every completion: for
# logging, metrics, caching.  They never see the key or the messages' text.  An
# observer that raises is logged and ignored; it cannot break a completion.


@hookspec
def chatplug_on_request(provider: str, model: str, stream: bool, request_id: str) -> None:
    """A completion is about to be sent (after validation passed)."""


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
) -> None:
    """A completion ended well: ``outcome`` is ``"complete"``, or ``"closed"`` when the
    caller stopped reading a stream early."""


@hookspec
def chatplug_on_error(
    provider: str,
    model: str,
    request_id: str,
    duration_s: float,
    attempts: int,
    error: Exception,
) -> None:
    """A completion failed with ``error`` (a :class:`chatplug.ChatplugError`)."""
