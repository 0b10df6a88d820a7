"""HTTP failures turned into chatplug's typed errors, with messages that say what to do.

Everything here reads the call's context from an :class:`~chatplug.http.HTTPClient`
(provider, model, timeouts, deadline) and redacts the call's key from anything a
server said before it becomes part of a message.
"""

from __future__ import annotations

import http.client
import math
import socket
import ssl
import sys
import time
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    ChatplugError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    StreamInterruptedError,
)
from .pending import NeverAwaited
from .redaction import redact

if TYPE_CHECKING:
    from .client import HTTPClient, Reply

__all__ = [
    "ConnectFailed",
    "ConnectTimeout",
    "IncompleteBody",
    "InvalidHeader",
    "InvalidURL",
    "MalformedReply",
    "excerpt",
    "is_transport_error",
    "redirect_error",
    "retry_after",
    "status_error",
    "translate",
]

class ConnectFailed(ConnectionError):
    """chatplug's own transport could not reach the server (or it closed without answering)."""


class ConnectTimeout(TimeoutError):
    """chatplug's own transport could not connect in time."""


class IncompleteBody(ConnectionError):
    """chatplug's own transport: the body ended before its framing said it would."""


class InvalidHeader(ValueError):
    """A request header that cannot be sent (a line break in it); nothing was sent."""


class MalformedReply(ValueError):
    """chatplug's own transport: the server's response is not valid HTTP after its status."""


class InvalidURL(ValueError):
    """Not an http(s) URL with a host; nothing was sent."""


#: How much of an error body is read to build a message.
ERROR_BODY_LIMIT = 64 * 1024
EXCERPT_LENGTH = 200


def excerpt(body: bytes | str, secret: str | None) -> str:
    """A short excerpt of a body for a message, the key masked before it is cut."""
    from ..wire.errors import excerpt as cut

    return cut(body, secret, EXCERPT_LENGTH)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's retry hint in seconds: ``retry-after-ms``, else ``Retry-After``
    (seconds or an HTTP date; a date in the past is 0).

    A value that is not a finite, non-negative number or a usable date (``nan``,
    ``inf``, ``1e309``, words, a date out of range) is ignored: ``None``, and the
    normal backoff applies.  Never raises.
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            seconds = _hint(str(value).strip(), scale, dates=scale == 1.0)
            if seconds is not None:
                return seconds
    return None


def _hint(value: str, scale: float, *, dates: bool) -> float | None:
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number * scale if math.isfinite(number) and number >= 0 else None
    if not dates:
        return None
    from datetime import timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - time.time()
    except Exception:  # words, absurd dates and offsets: OverflowError, ValueError...
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


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
    """Map a requests/urllib3/socket exception to chatplug's error for it: the one
    place that does.  A read the call itself cut (its deadline passed, it was
    cancelled) is reported as that, whatever exception the cut socket raised."""
    if isinstance(exc, ChatplugError):
        return exc
    requests: Any
    u3: Any
    if "requests" not in sys.modules:
        # Only chatplug's native transport ran: requests' classes cannot match, and
        # importing it here would stall the event loop that transport runs on.
        requests = u3 = _NOT_LOADED
    else:
        import requests
        import urllib3.exceptions as u3

    context: dict[str, Any] = {"provider": client.provider, "model": client.model}
    where = f" {url}" if url else ""
    detail = redact(str(exc), client.api_key)
    cut = client.context.failure(slack=0.01)
    if cut is not None:
        return cut
    chain = _chain(exc)
    if isinstance(exc, NeverAwaited):
        return ProviderResponseError(_never_awaited(client), **context)
    if isinstance(exc, (requests.ConnectTimeout, u3.ConnectTimeoutError, ConnectTimeout)):
        return ProviderTimeoutError(
            f"could not connect to{where} within {client.transport.connect_timeout:g} s. "
            "Check the URL and your network, or raise CHATPLUG_CONNECT_TIMEOUT.",
            **context,
        )
    if isinstance(exc, (requests.Timeout, u3.TimeoutError, TimeoutError)):
        return ProviderTimeoutError(
            f"the server{where} sent nothing for {client.read_timeout:g} s. "
            "Try again later, or raise CHATPLUG_READ_TIMEOUT.",
            **context,
        )
    tls = next((cause for cause in chain if isinstance(cause, ssl.SSLError)), None)
    if tls is not None or isinstance(exc, requests.exceptions.SSLError):
        return _tls_error(tls, where, context, client.api_key)
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, InvalidURL)):
        return _final(ProviderConnectionError(
            f"invalid URL{where}: {detail}. Fix the provider's URL setting.", **context))
    if isinstance(exc, MalformedReply) or any(
            isinstance(cause, u3.InvalidHeader) for cause in chain):
        # urllib3's InvalidHeader is about the response (two Content-Lengths, say).
        return ProviderResponseError(
            f"{where.strip() or 'the server'} answered with a response chatplug cannot read "
            f"({detail}). Check that the URL setting points at the API itself, not a "
            "proxy or a page in front of it.", **context)
    if isinstance(exc, (requests.exceptions.InvalidHeader, UnicodeEncodeError, InvalidHeader)):
        # Nothing was sent: a header (the key, or one passed in headers=) cannot be.
        return InvalidRequestError(
            f"a request header cannot be sent ({detail}). Check the provider's key and "
            "the headers passed to create().", **context)
    banner = next((cause for cause in chain if isinstance(cause, _NOT_HTTP)
                   and not isinstance(cause, http.client.RemoteDisconnected)), None)
    if banner is not None:
        said = redact(" ".join(str(banner.args[0] if banner.args else "").split())[:60],
                      client.api_key)
        return _final(ProviderConnectionError(
            f"{where.strip() or 'the server'} answered {said!r}: this is not an HTTP server. "
            "Check the host and port in the provider's URL setting.", **context))
    if isinstance(exc, (requests.ConnectionError, ConnectFailed)) and any(
        isinstance(cause, (u3.NameResolutionError, socket.gaierror)) for cause in chain
    ):
        return ProviderConnectionError(
            f"could not resolve the host of{where}. Check the spelling of the provider's "
            "URL setting and your DNS.",
            **context,
        )
    if isinstance(exc, (requests.ConnectionError, ConnectFailed)):
        return ProviderConnectionError(
            f"could not reach{where}: {redact(_root_cause(exc), client.api_key)}. "
            "Check the URL setting and that the server is running.",
            **context,
        )
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, u3.ProtocolError,
                        IncompleteBody)):
        return StreamInterruptedError(
            "the server closed the connection before the reply ended. "
            "The reply is incomplete; try again.",
            **context,
        )
    if isinstance(exc, (ConnectionError, OSError)):
        return StreamInterruptedError(
            f"the connection broke while reading the reply "
            f"({redact(_root_cause(exc), client.api_key)}). "
            "The reply is incomplete; try again.",
            **context,
        )
    if isinstance(exc, (requests.exceptions.ContentDecodingError, u3.DecodeError, zlib.error)):
        return ProviderResponseError(
            f"the reply's content encoding is broken ({detail}).", **context
        )
    return ProviderResponseError(
        f"unexpected transport failure: {type(exc).__name__}: {detail}", **context
    )


def _never_awaited(client: HTTPClient) -> str:
    return (f"the plugin {client.provider!r} dropped a wait of the transport (a "
            "chatplug.transport.pending.Pending it got from chatplug.wire) instead of "
            "passing it on, which would freeze the event loop running the call. A plugin "
            "that declares native_async = True passes every item it does not handle "
            "through, or filters text with chatplug.transport.pending.text_only. This is "
            "a bug in the plugin; report it, or set CHATPLUG_NATIVE_ASYNC=0 meanwhile.")


class _Never(Exception):
    """Matches nothing: stands in for requests' exception classes when it is not loaded."""


class _NotLoaded:
    """requests and urllib3.exceptions as :func:`translate` sees them when never imported:
    every exception class asked for is one nothing raises."""

    def __getattr__(self, name: str) -> Any:
        return self if name == "exceptions" else _Never


_NOT_LOADED = _NotLoaded()


#: Errors of a status line that is not HTTP (an SSH banner, a database's greeting).
_NOT_HTTP = (http.client.BadStatusLine, http.client.UnknownProtocol)
#: OpenSSL's reasons for "the other side does not speak TLS at all".
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                      "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST"})


def _final(error: ProviderConnectionError) -> ProviderConnectionError:
    error.retryable = False  # trying again cannot help
    return error


def _tls_error(tls: ssl.SSLError | None, where: str, context: dict[str, Any],
               secret: str | None) -> ProviderConnectionError:
    reason = getattr(tls, "reason", None) or ""
    if reason in _NOT_TLS or "wrong version number" in str(tls).lower():
        return _final(ProviderConnectionError(
            f"could not open a TLS connection to{where}: this server does not speak TLS; "
            "use http:// in the provider's URL setting (or the server's HTTPS port).",
            **context))
    said = redact(str(getattr(tls, "verify_message", None) or reason or tls or "")
                  .strip(), secret)
    if isinstance(tls, ssl.SSLCertVerificationError) or reason == "CERTIFICATE_VERIFY_FAILED":
        return _final(ProviderConnectionError(
            f"TLS verification of{where} failed ({said}). If the server uses a private "
            "CA, point CHATPLUG_CA_BUNDLE at its certificate bundle.",
            **context))
    return ProviderConnectionError(
        f"the TLS connection to{where} failed ({said or 'no reason given'}). "
        "Check that the URL's host and port serve HTTPS.",
        **context)


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
