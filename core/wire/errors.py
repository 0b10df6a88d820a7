"""What a server says went wrong, as the wire formats report it.

The parser of error bodies (:class:`ServerError`, :func:`error_of`, :func:`excerpt`...)
is :mod:`chatplug.transport.bodies`, shared with the transport, which reads error
statuses first; it is re-exported here.  :func:`reported_error` turns an error a
server sent inside a ``200`` reply into chatplug's typed error.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import (
    AuthenticationError,
    ProviderError,
    ProviderResponseError,
    RateLimitError,
    StreamInterruptedError,
)
from ..transport import bodies
from ..transport.bodies import EXCERPT_LENGTH as EXCERPT_LENGTH
from ..transport.bodies import MARGIN as MARGIN
from ..transport.bodies import WINDOW as WINDOW
from ..transport.bodies import ServerError as ServerError
from ..transport.bodies import body_error as body_error
from ..transport.bodies import error_of as error_of
from ..transport.bodies import excerpt as excerpt
from ..transport.bodies import model_refused as model_refused
from ..transport.bodies import sentence as sentence

__all__ = [*bodies.__all__, "QUOTE_LENGTH", "quoted", "reported_error", "said"]

#: How much of a stream event or reply that breaks a wire format a message quotes.
QUOTE_LENGTH = 120


def quoted(data: Any, secret: str | None) -> str:
    """A piece of a body that breaks a wire format, short, keys masked, in quotes."""
    return repr(excerpt(data if isinstance(data, (str, bytes)) else str(data), secret,
                        QUOTE_LENGTH))


def said(error: ServerError, payload: Any, secret: str | None) -> str:
    """What to quote of ``error``: its message, else the object that carried it."""
    if error.message:
        return excerpt(error.message, secret)
    try:
        raw = json.dumps(payload, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        raw = type(payload).__name__
    return excerpt(raw, secret)


def reported_error(
    error: ServerError,
    payload: Any,
    *,
    where: str,
    secret: str | None = None,
    received: int | None = None,
    provider: str | None = None,
) -> ProviderError:
    """chatplug's error for an error object a server sent inside a ``200`` reply.

    :param where: ``"its reply"`` or ``"the stream"``, for the message.
    :param received: characters of the reply already delivered, when a stream had
        delivered content before the error: the reply is then incomplete, and the
        error a :class:`StreamInterruptedError` carrying the server's words (LiteLLM,
        for one, turns an upstream cut into such an error event).
    :param provider: names the key's variable in the message of a refused key.
    """
    text = said(error, payload, secret)
    if received is not None:
        return StreamInterruptedError(
            f"the server reported an error in the stream after {received} characters: "
            f"{sentence(text)} The reply is incomplete; try again.",
            received=received,
        )
    if error.rate_limited:
        return RateLimitError(f"the server reported in {where}: {sentence(text)} Retry later.",
                              upstream_code=error.symbol or None,
                              upstream_type=error.type or None, upstream_message=text)
    if error.refused_key:
        from ..naming import env_name

        variable = env_name(provider) if provider else "the provider's API key setting"
        return AuthenticationError(
            f"the server reported in {where}: {sentence(text)} Check {variable}."
        )
    return ProviderResponseError(f"the server reported an error in {where}: {text}")
