"""HTTP failures turned into chatplug's typed errors, with messages that say what to do.

Everything here reads the call's context from an :class:`~chatplug.http.HTTPClient`
(provider, model, timeouts, deadline) and redacts the call's key from anything a
server said before it becomes part of a message.
"""

from __future__ import annotations

import ast
import contextlib
import http.client
import math
import os
import re
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
from .redaction import redact

if TYPE_CHECKING:
    from .bodies import ServerError
    from .client import HTTPClient, Reply

__all__ = [
    "ConnectCut",
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


class ConnectCut(ConnectionError):
    """chatplug's loop transport: the call's deadline or a cancel cut a request before its
    answer came (reported as that cut)."""


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


def excerpt(body: bytes | str, secret: str | None, limit: int = EXCERPT_LENGTH) -> str:
    """A short excerpt of a body for a message, the key masked before it is cut."""
    from .bodies import excerpt as cut

    return cut(body, secret, limit)


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
    a :class:`ProviderHTTPError` about the model.  A :class:`ProviderHTTPError` keeps
    the body's ``code``, ``type``, ``param`` and whole message (see :func:`_said`) and
    the ``x-should-retry`` header; a 404 at a URL without a version segment says the
    provider's URL probably lacks ``/v1``.
    """
    from .bodies import body_error, model_refused, sentence

    body = reply.read(limit=ERROR_BODY_LIMIT, fail=False)
    error = body_error(body)
    if error is not None and error.message:
        said_text = excerpt(error.message, client.api_key, MESSAGE_LENGTH)
    else:
        said_text = excerpt(body, client.api_key)
    label = f"{status} {reply.reason}".strip()
    said = f": {said_text}" if said_text else ""
    context: dict[str, Any] = {"provider": client.provider, "model": client.model}
    if status == 403 and error is not None and model_refused(error.message, client.model):
        return ProviderHTTPError(
            f"{label}: the server does not allow the model {client.model!r}"
            f"{sentence(said) if said else '.'} Choose a model "
            "this deployment allows (a NextChat deployment lists them in CUSTOM_MODELS); "
            "the key was not refused.",
            status_code=status, body=said_text, **context, **_said(client, error, reply),
        )
    if status in (401, 403) or (status == 400 and error is not None and error.reason
                                and error.refused_key):
        # Google answers a key it refuses with 400 and the reason API_KEY_INVALID.
        what = "refused the API key" if client.api_key else "requires an API key"
        return AuthenticationError(
            f"the server {what} ({label}){sentence(said) if said else '.'} "
            f"{_key_hint(client)}",
            status_code=status,
            **context,
        )
    if status == 429:
        after = retry_after(reply.headers)
        if after is None and error is not None:
            after = error.retry_after  # Google's RetryInfo.retryDelay
        wait = f" The server asks to wait {after:g} s." if after is not None else ""
        return RateLimitError(
            f"rate limited ({label}){sentence(said) if said else '.'}{wait} "
            "Retry later or lower the request rate.",
            body=said_text,
            retry_after=after,
            **context,
            **_said(client, error, reply),
        )
    fields = _said(client, error, reply)
    if status == 404:
        hint = f" Check the provider's URL setting; {url} does not exist."
        path = urlsplit(url).path
        if path.endswith(_ENDPOINTS) and not _VERSIONED.search(path):
            hint += _version_hint(client, url)
            # The URL is at fault, not the request: a gateway says so in these words.
            fields["upstream_message"] = None
    elif status >= 500:
        hint = " The server failed; try again later."
    else:
        hint = " The server rejected the request."
    return ProviderHTTPError(
        f"{label}{sentence(said) if said else '.'}{hint}", status_code=status, body=said_text,
        **context, **fields,
    )


#: The longest message of a server's JSON error quoted in chatplug's message (a server's
#: own sentence for people, so longer than an excerpt of an unknown body).
MESSAGE_LENGTH = 600
#: The longest message of a server's JSON error kept whole for a gateway to pass on.
RELAYED_LENGTH = 4000
#: The endpoints of the OpenAI-style APIs whose base URL ends in a version (``/v1``).
_ENDPOINTS = ("/chat/completions", "/completions", "/responses", "/messages", "/models",
              "/embeddings")
#: A version segment in a URL's path: ``/v1``, ``/v1beta``, ``/v2/``.
_VERSIONED = re.compile(r"/v\d+[a-z0-9]*(/|$)", re.IGNORECASE)


def _said(client: HTTPClient, error: ServerError | None, reply: Reply) -> dict[str, Any]:
    """What a server's error body and headers said, as :class:`ProviderHTTPError`
    keeps it: its code, type, param and whole message, and ``x-should-retry``."""
    flag = str(reply.headers.get("x-should-retry", "")).strip().lower()
    fields: dict[str, Any] = {"should_retry": False if flag == "false" else None}
    if error is not None:
        fields.update(
            upstream_code=error.symbol or None,
            upstream_type=error.type or None,
            param=error.param or None,
            upstream_message=(excerpt(error.message, client.api_key, RELAYED_LENGTH)
                              if error.message else None),
        )
    return fields


def _version_hint(client: HTTPClient, url: str) -> str:
    """A 404 at a URL with no version segment: the base URL probably lacks ``/v1``
    (``CHATPLUG_OPENAI_URL=http://host:port`` instead of ``.../v1``)."""
    from ..naming import variables_for

    parts = urlsplit(url)
    variable = variables_for(client.provider, "url") if client.provider else "its URL setting"
    return (f" The URL has no version in its path: the provider's URL probably needs /v1 "
            f"at its end (set {variable} to {parts.scheme}://{parts.netloc}/v1, or what "
            "the server documents).")


def _key_hint(client: HTTPClient) -> str:
    """What to do about a refused key: the variable that holds it, by name."""
    from ..naming import variables_for

    variable = variables_for(client.provider) if client.provider else "the provider's API key"
    if client.api_key:
        return f"Check {variable} (or the api_key= passed to the call)."
    return f"No key was sent: set {variable}, or pass api_key=."


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the HTTP stack (requests, urllib3, aiohttp, http.client,
    sockets, TLS).

    Modules are looked up, not imported: if requests was never imported, nothing
    raised one of its exceptions.
    """
    if isinstance(exc, OSError):
        return True
    bases: list[type[BaseException]] = []
    for module, name in (("requests", "RequestException"), ("urllib3.exceptions", "HTTPError"),
                         ("aiohttp", "ClientError"), ("http.client", "HTTPException")):
        loaded = sys.modules.get(module)
        base = getattr(loaded, name, None) if loaded is not None else None
        if base is not None:
            bases.append(base)
    return isinstance(exc, tuple(bases))


class _Failure:
    """What :func:`translate` knows of one failure while it builds the error."""

    __slots__ = ("chain", "client", "context", "decisive", "exc", "where")

    def __init__(self, client: HTTPClient, exc: BaseException, url: str | None) -> None:
        self.client = client
        self.exc = exc
        self.chain = _chain(exc)
        #: The exception of the chain whose entry decided.
        self.decisive = exc
        self.where = f" {url}" if url else ""
        self.context: dict[str, Any] = {"provider": client.provider, "model": client.model}

    @property
    def detail(self) -> str:
        return redact(str(self.exc), self.client.api_key)

    @property
    def cause(self) -> str:
        return redact(_root_cause(self.exc), self.client.api_key)



Builder = Callable[[_Failure], ChatplugError]


def _connect_timeout(f: _Failure) -> ChatplugError:
    return ProviderTimeoutError(
        f"could not connect to{f.where} within {f.client.transport.connect_timeout:g} s. "
        "Check the URL and your network, or raise CHATPLUG_CONNECT_TIMEOUT.", **f.context)


def _read_timeout(f: _Failure) -> ChatplugError:
    return ProviderTimeoutError(
        f"the server{f.where} sent nothing for {f.client.read_timeout:g} s. "
        "Try again later, or raise CHATPLUG_READ_TIMEOUT.", **f.context)


def _tls(f: _Failure) -> ChatplugError:
    tls: Any = f.decisive
    if not isinstance(tls, ssl.SSLError):  # aiohttp keeps the ssl error beside it
        tls = getattr(tls, "certificate_error", None) or getattr(tls, "os_error", None)
    return _tls_error(tls if isinstance(tls, ssl.SSLError) else None, f.where, f.context,
                      f.client.api_key)


def _invalid_url(f: _Failure) -> ChatplugError:
    return _final(ProviderConnectionError(
        f"invalid URL{f.where}: {f.detail}. Fix the provider's URL setting.", **f.context))


def _unreadable(f: _Failure) -> ChatplugError:
    return ProviderResponseError(
        f"{f.where.strip() or 'the server'} answered with a response chatplug cannot read "
        f"({f.detail}). Check that the URL setting points at the API itself, not a "
        "proxy or a page in front of it.", **f.context)


def _bad_header(f: _Failure) -> ChatplugError:
    # Nothing was sent: a header (the key, or one passed in headers=) cannot be.
    return InvalidRequestError(
        f"a request header cannot be sent ({f.detail}). Check the provider's key and "
        "the headers passed to create().", **f.context)


def _not_http(f: _Failure) -> ChatplugError:
    said = redact(" ".join(_status_line(f.decisive).split())[:60], f.client.api_key)
    return _final(ProviderConnectionError(
        f"{f.where.strip() or 'the server'} answered {said!r}: this is not an HTTP server. "
        "Check the host and port in the provider's URL setting.", **f.context))


def _unresolved(f: _Failure) -> ChatplugError:
    return ProviderConnectionError(
        f"could not resolve the host of{f.where}. Check the spelling of the provider's "
        "URL setting and your DNS.", **f.context)


def _unreachable(f: _Failure, cause: str | None = None) -> ChatplugError:
    return ProviderConnectionError(
        f"could not reach{f.where}: {cause or f.cause}. "
        "Check the URL setting and that the server is running.", **f.context)


def _head_refused(f: _Failure) -> ChatplugError:
    # aiohttp's refusal of a response head, in http.client's words as the sync transport
    # says them (the limits are the same: :mod:`.native`).
    if "Too many headers" in str(f.decisive):
        return _unreachable(f, "got more than 100 headers")
    if type(f.decisive).__name__ == "LineTooLong":
        return _unreachable(f, "got more than 65536 bytes when reading header line")
    return _unreadable(f)


def _unanswered(f: _Failure) -> ChatplugError:
    # aiohttp's "Server disconnected", in http.client's words as the sync transport says it.
    return _unreachable(f, "Remote end closed connection without response")


def _refused(f: _Failure) -> ChatplugError:
    # aiohttp's ClientConnectorError keeps the socket's error: its own words, as the sync
    # transport says them ("[Errno 111] Connection refused").
    error = getattr(f.exc, "os_error", None)
    errno = getattr(error, "errno", None)
    return _unreachable(f, f"[Errno {errno}] {os.strerror(errno)}" if errno else None)


def _interrupted(f: _Failure) -> ChatplugError:
    return StreamInterruptedError(
        "the server closed the connection before the reply ended. "
        "The reply is incomplete; try again.", **f.context)


def _broken(f: _Failure) -> ChatplugError:
    return StreamInterruptedError(
        f"the connection broke while reading the reply ({f.cause}). "
        "The reply is incomplete; try again.", **f.context)


def _bad_encoding(f: _Failure) -> ChatplugError:
    return ProviderResponseError(
        f"the reply's content encoding is broken ({f.detail}).", **f.context)


def _never_awaited(f: _Failure) -> ChatplugError:
    return ProviderResponseError(
        f"the plugin {f.client.provider!r} dropped a wait of the transport (a "
        "chatplug.transport.pending.Pending it got from chatplug.wire) instead of passing "
        "it on, which would freeze the event loop running the call. A plugin that "
        "declares native_async = True passes every item it does not handle through, or "
        "filters text with chatplug.transport.pending.text_only. This is a bug in the "
        "plugin; report it, or set CHATPLUG_NATIVE_ASYNC=0 meanwhile.", **f.context)


#: Exception class (by module and name, so nothing is imported to look) -> the error for
#: it, most telling first: the exception chain's entry that comes first here decides
#: (a TLS failure wrapped in a connection error is a TLS failure).  requests/urllib3
#: (the sync transport), aiohttp (the loop's), the standard library's, chatplug's own.
TABLE: dict[str, Builder] = {
    "chatplug.transport.pending.NeverAwaited": _never_awaited,
    "requests.exceptions.ConnectTimeout": _connect_timeout,
    "urllib3.exceptions.ConnectTimeoutError": _connect_timeout,
    "aiohttp.client_exceptions.ConnectionTimeoutError": _connect_timeout,
    "chatplug.transport.failures.ConnectTimeout": _connect_timeout,
    "requests.exceptions.Timeout": _read_timeout,
    "urllib3.exceptions.TimeoutError": _read_timeout,
    "aiohttp.client_exceptions.ServerTimeoutError": _read_timeout,
    "builtins.TimeoutError": _read_timeout,
    "ssl.SSLError": _tls,
    "requests.exceptions.SSLError": _tls,
    "aiohttp.client_exceptions.ClientSSLError": _tls,
    "requests.exceptions.InvalidURL": _invalid_url,
    "requests.exceptions.MissingSchema": _invalid_url,
    "requests.exceptions.InvalidSchema": _invalid_url,
    "aiohttp.client_exceptions.InvalidURL": _invalid_url,
    "chatplug.transport.failures.InvalidURL": _invalid_url,
    "http.client.RemoteDisconnected": _unreachable,
    "http.client.BadStatusLine": _not_http,
    "http.client.UnknownProtocol": _not_http,
    "aiohttp.http_exceptions.BadStatusLine": _not_http,
    "urllib3.exceptions.InvalidHeader": _unreadable,
    # A body cut short (a subclass of the parser's BadHttpMessage): not a bad head.
    "aiohttp.http_exceptions.PayloadEncodingError": _interrupted,
    "aiohttp.http_exceptions.LineTooLong": _head_refused,
    "aiohttp.http_exceptions.BadHttpMessage": _head_refused,
    "chatplug.transport.failures.MalformedReply": _unreadable,
    "requests.exceptions.InvalidHeader": _bad_header,
    "builtins.UnicodeEncodeError": _bad_header,
    "chatplug.transport.failures.InvalidHeader": _bad_header,
    "socket.gaierror": _unresolved,
    "urllib3.exceptions.NameResolutionError": _unresolved,
    # A subclass of ConnectTimeoutError (for urllib3 1.x's sake), but a refusal.
    "urllib3.exceptions.NewConnectionError": _unreachable,
    "aiohttp.client_exceptions.ClientConnectorDNSError": _unresolved,
    "aiohttp.client_exceptions.ServerDisconnectedError": _unanswered,
    "aiohttp.client_exceptions.ClientConnectorError": _refused,
    "aiohttp.client_exceptions.ClientProxyConnectionError": _refused,
    "requests.exceptions.ConnectionError": _unreachable,
    "chatplug.transport.failures.ConnectFailed": _unreachable,
    "chatplug.transport.failures.ConnectCut": _unreachable,
    "requests.exceptions.ChunkedEncodingError": _interrupted,
    "urllib3.exceptions.ProtocolError": _interrupted,
    "aiohttp.client_exceptions.ClientPayloadError": _interrupted,
    "chatplug.transport.failures.IncompleteBody": _interrupted,
    "builtins.OSError": _broken,
    "requests.exceptions.ContentDecodingError": _bad_encoding,
    "urllib3.exceptions.DecodeError": _bad_encoding,
    "zlib.error": _bad_encoding,
}
_RANK = {name: rank for rank, name in enumerate(TABLE)}
_BUILDERS = list(TABLE.values())
_NO_ENTRY = len(TABLE)


def _rank(exc: BaseException) -> int:
    """The table's place of ``exc``'s most specific class that has an entry."""
    for cls in type(exc).__mro__:
        rank = _RANK.get(f"{cls.__module__}.{cls.__qualname__}")
        if rank is not None:
            return rank
    return _NO_ENTRY


def translate(client: HTTPClient, exc: BaseException, *, url: str | None = None) -> ChatplugError:
    """Map a requests/urllib3/aiohttp/socket exception to chatplug's error for it (the one
    place that does, through :data:`TABLE`).  A read the call itself cut (its deadline
    passed, it was cancelled) is reported as that, whatever exception the cut socket
    raised."""
    if isinstance(exc, ChatplugError):
        return exc
    cut = client.context.failure(slack=0.01)
    if cut is not None:
        return cut
    failure = _Failure(client, exc, url)
    rank, failure.decisive = min(((_rank(cause), cause) for cause in failure.chain),
                                 key=lambda ranked: ranked[0])
    if rank == _NO_ENTRY:
        return ProviderResponseError(
            f"unexpected transport failure: {type(exc).__name__}: {failure.detail}",
            **failure.context)
    return _BUILDERS[rank](failure)


def _status_line(exc: BaseException) -> str:
    """The status line a server sent instead of HTTP's (an SSH banner, a database's
    greeting): http.client's first argument, the ``b'...'`` in aiohttp's text."""
    if isinstance(exc, http.client.HTTPException):
        return str(exc.args[0] if exc.args else "")
    quoted = re.search(r"b(['\"])(.*?)\1", str(exc))
    if quoted is None:
        return ""
    with contextlib.suppress(ValueError, SyntaxError):
        return bytes(ast.literal_eval(quoted.group(0))).decode("latin-1")
    return quoted.group(2)
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
        inner = reason if isinstance(reason, BaseException) else (
            nested or exc.__cause__ or exc.__context__)
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
