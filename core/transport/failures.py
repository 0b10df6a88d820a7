"""HTTP failures turned into chatplug's typed errors, with messages that say what to do.

Everything here reads the call's context from an :class:`~chatplug.http.HTTPClient`
(provider, model, timeouts, deadline) and redacts the call's key from anything a
server said before it becomes part of a message.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    ChatplugError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    StreamInterruptedError,
)
from .redaction import redact

if TYPE_CHECKING:
    from .client import HTTPClient, Reply

__all__ = [
    "excerpt",
    "is_transport_error",
    "redirect_error",
    "retry_after",
    "status_error",
    "translate",
]

#: How much of an error body is read to build a message.
ERROR_BODY_LIMIT = 64 * 1024
EXCERPT_LENGTH = 200


def excerpt(body: bytes | str, secret: str | None) -> str:
    """A short excerpt of a body for a message, the key masked before it is cut."""
    from ..wire.errors import excerpt as cut

    return cut(body, secret, EXCERPT_LENGTH)


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def redirect_error(client: HTTPClient, status: int, reply: Reply, url: str) -> ProviderHTTPError:
    """Redirects are refused: a request, and its key, never go to another host."""
    location = reply.headers.get("location", "")
    return ProviderHTTPError(
        f"{status} {reply.reason}: {url} redirects to {redact(location, client.api_key)!r}. "
        "chatplug does not follow redirects (a key must never reach another host); "
        "set the provider's URL setting to the final address.",
        status_code=status,
        provider=client.provider,
        model=client.model,
    )


def status_error(client: HTTPClient, status: int, reply: Reply, url: str) -> ProviderError:
    """The typed error for an HTTP status >= 400, with what the server said.

    401/403 are a refused (or missing) key, naming the variable that holds it, except
    a 403 that says the model is not allowed (NextChat's ``CUSTOM_MODELS``): that is
    a :class:`ProviderHTTPError` about the model.
    """
    from ..wire.errors import body_error, model_refused, sentence

    body = reply.read(limit=ERROR_BODY_LIMIT, fail=False)
    error = body_error(body)
    said_text = excerpt(error.message if error and error.message else body, client.api_key)
    label = f"{status} {reply.reason}".strip()
    said = f": {said_text}" if said_text else ""
    context: dict[str, Any] = {"provider": client.provider, "model": client.model}
    if status == 403 and error is not None and model_refused(error.message, client.model):
        return ProviderHTTPError(
            f"{label}: the server does not allow the model {client.model!r}"
            f"{sentence(said) if said else '.'} Choose a model "
            "this deployment allows (a NextChat deployment lists them in CUSTOM_MODELS); "
            "the key was not refused.",
            status_code=status, body=said_text, **context,
        )
    if status in (401, 403):
        what = "refused the API key" if client.api_key else "requires an API key"
        return AuthenticationError(
            f"the server {what} ({label}){sentence(said) if said else '.'} "
            f"{_key_hint(client)}",
            status_code=status,
            **context,
        )
    if status == 429:
        after = retry_after(reply.headers)
        wait = f" The server asks to wait {after:g} s." if after is not None else ""
        return RateLimitError(
            f"rate limited ({label}){sentence(said) if said else '.'}{wait} "
            "Retry later or lower the request rate.",
            body=said_text,
            retry_after=after,
            **context,
        )
    if status == 404:
        hint = f" Check the provider's URL setting; {url} does not exist."
    elif status >= 500:
        hint = " The server failed; try again later."
    else:
        hint = " The server rejected the request."
    return ProviderHTTPError(
        f"{label}{sentence(said) if said else '.'}{hint}", status_code=status, body=said_text,
        **context,
    )


def _key_hint(client: HTTPClient) -> str:
    """What to do about a refused key: the variable that holds it, by name."""
    from ..naming import env_name

    variable = env_name(client.provider) if client.provider else "the provider's API key"
    if client.api_key:
        return f"Check {variable} (or the api_key= passed to the call)."
    return f"No key was sent: set {variable}, or pass api_key=."


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the HTTP stack (requests, urllib3, http.client, sockets, TLS).

    Modules are looked up, not imported: if requests was never imported, nothing
    raised one of its exceptions.
    """
    if isinstance(exc, OSError):
        return True
    bases: list[type[BaseException]] = []
    requests = sys.modules.get("requests")
    if requests is not None:
        bases.append(requests.RequestException)
    urllib3 = sys.modules.get("urllib3.exceptions")
    if urllib3 is not None:
        bases.append(urllib3.HTTPError)
    client = sys.modules.get("http.client")
    if client is not None:
        bases.append(client.HTTPException)
    return isinstance(exc, tuple(bases))


def translate(client: HTTPClient, exc: BaseException, *, url: str | None = None) -> ChatplugError:
    """Map a requests/urllib3/socket exception to chatplug's error for it."""
    import requests
    import urllib3.exceptions as u3

    context: dict[str, Any] = {"provider": client.provider, "model": client.model}
    where = f" {url}" if url else ""
    detail = redact(str(exc), client.api_key)
    if isinstance(exc, ChatplugError):
        return exc
    timed_out = isinstance(exc, (requests.Timeout, u3.TimeoutError, TimeoutError))
    # Past the deadline, whatever broke was most likely the watchdog shutting the socket
    # down at the deadline: say so.
    if client.deadline is not None and time.monotonic() >= client.deadline - 0.01:
        return ProviderTimeoutError(
            "the call's deadline passed before the reply was complete. "
            "Raise CHATPLUG_TIMEOUT or pass a larger timeout= to create().",
            **context,
        )
    if isinstance(exc, (requests.ConnectTimeout, u3.ConnectTimeoutError)):
        return ProviderTimeoutError(
            f"could not connect to{where} within {client.transport.connect_timeout:g} s. "
            "Check the URL and your network, or raise CHATPLUG_CONNECT_TIMEOUT.",
            **context,
        )
    if timed_out:
        return ProviderTimeoutError(
            f"the server{where} sent nothing for {client.read_timeout:g} s. "
            "Try again later, or raise CHATPLUG_READ_TIMEOUT.",
            **context,
        )
    if isinstance(exc, requests.exceptions.SSLError):
        error = ProviderConnectionError(
            f"TLS verification of{where} failed ({detail}). If the server uses a private "
            "CA, point CHATPLUG_CA_BUNDLE at its certificate bundle.",
            **context,
        )
        error.retryable = False
        return error
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        error = ProviderConnectionError(
            f"invalid URL{where}: {detail}. Fix the provider's URL setting.", **context
        )
        error.retryable = False
        return error
    if isinstance(exc, requests.ConnectionError) and any(
        isinstance(cause, (u3.NameResolutionError, socket.gaierror)) for cause in _chain(exc)
    ):
        return ProviderConnectionError(
            f"could not resolve the host of{where}. Check the spelling of the provider's "
            "URL setting and your DNS.",
            **context,
        )
    if isinstance(exc, requests.ConnectionError):
        return ProviderConnectionError(
            f"could not reach{where}: {_root_cause(exc)}. "
            "Check the URL setting and that the server is running.",
            **context,
        )
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, u3.ProtocolError)):
        return StreamInterruptedError(
            "the server closed the connection before the reply ended. "
            "The reply is incomplete; try again.",
            **context,
        )
    if isinstance(exc, (ConnectionError, OSError)):
        return StreamInterruptedError(
            f"the connection broke while reading the reply ({_root_cause(exc)}). "
            "The reply is incomplete; try again.",
            **context,
        )
    if isinstance(exc, (requests.exceptions.ContentDecodingError, u3.DecodeError)):
        return ProviderResponseError(
            f"the reply's content encoding is broken ({detail}).", **context
        )
    return ProviderResponseError(
        f"unexpected transport failure: {type(exc).__name__}: {detail}", **context
    )



def _chain(exc: BaseException) -> list[BaseException]:
    """A requests/urllib3 error and the errors it wraps, outermost first."""
    chain = [exc]
    for _ in range(10):
        nested = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        reason = getattr(exc, "reason", None)
        inner = reason if isinstance(reason, BaseException) else nested or exc.__context__
        if inner is None or inner in chain:
            break
        chain.append(inner)
        exc = inner
    return chain


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error chain, in a few words."""
    exc = _chain(exc)[-1]
    text = str(exc)
    if "] " in text and text.startswith("<"):
        text = text.split(": ", 1)[-1]
    return text or type(exc).__name__
