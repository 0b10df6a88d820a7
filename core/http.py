"""The HTTP transport: one pooled ``requests.Session`` per registry, typed errors.

:class:`Transport` owns the session.  A provider receives an
:class:`HTTPClient`, a view of the transport bound to one call (provider name,
model, key to redact, timeouts); everything it raises is a
:class:`chatplug.ChatplugError`.  ``requests`` is imported on first use, so
listing providers never pays for it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import (
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
from .redaction import install_log_redaction, redact, remember

if TYPE_CHECKING:
    import requests

    from .settings import Settings

__all__ = ["HTTPClient", "Reply", "Transport"]

logger = logging.getLogger("chatplug.http")

#: Bytes asked of the socket per read while streaming.  Reads return as soon as
#: any data is there (``read1``), so this bounds memory, it never delays a token.
STREAM_READ_SIZE = 16 * 1024
#: How much of an error body is read to build a message.
ERROR_BODY_LIMIT = 64 * 1024
EXCERPT_LENGTH = 200
USER_AGENT = "chatplug/0.1"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def _excerpt(body: bytes, secret: str | None) -> str:
    text = " ".join(body[: EXCERPT_LENGTH * 4].decode("utf-8", "replace").split())
    if len(text) > EXCERPT_LENGTH:
        text = text[: EXCERPT_LENGTH - 1] + "…"
    return redact(text, secret)


def _error_message_from_body(body: bytes) -> str | None:
    """The ``error.message`` of an OpenAI-style error body, if that is what it is."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail"))
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str) and error.strip():
            return " ".join(error.split())[:EXCERPT_LENGTH]
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
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


class Transport:
    """Owns the pooled session shared by every call of one registry.

    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds allowed between two reads of the reply.
    :param pool_size: connections kept per host; sized for concurrent streams.
    :param ca_bundle: a CA bundle path for TLS verification; verification is
        always on and cannot be turned off.
    :param max_response_bytes: the most a single reply may send before it is cut off.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        pool_size: int = 64,
        ca_bundle: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_size = pool_size
        self.ca_bundle = ca_bundle
        self.max_response_bytes = max_response_bytes
        #: Passed with every request, so REQUESTS_CA_BUNDLE cannot override our setting.
        self.verify: str | bool = ca_bundle or True
        self._session: requests.Session | None = None
        self._lock = threading.Lock()
        install_log_redaction()

    @classmethod
    def from_settings(cls, settings: Settings) -> Transport:
        """A transport configured by chatplug's settings."""
        return cls(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            ca_bundle=settings.effective_ca_bundle,
            max_response_bytes=settings.max_response_bytes,
        )

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._new_session()
        return self._session

    def _new_session(self) -> requests.Session:
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=self.pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        session.verify = self.verify
        return session

    def client(
        self,
        *,
        provider: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        deadline: float | None = None,
    ) -> HTTPClient:
        """An :class:`HTTPClient` bound to one call (``deadline`` on ``time.monotonic()``)."""
        return HTTPClient(
            self, provider=provider, model=model, api_key=api_key, deadline=deadline
        )

    def close(self) -> None:
        """Close every pooled connection; the next request opens a new session."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()


class HTTPClient:
    """The transport as one call of one provider sees it.

    Every error it raises is a :class:`chatplug.ChatplugError` carrying the
    provider and model, with the call's API key redacted from its text.
    Connect and read timeouts never exceed what is left of the call's deadline.
    Redirects are not followed: nothing, a key least of all, goes to a host
    other than the configured one.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        provider: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        deadline: float | None = None,
    ) -> None:
        self.transport = transport
        self.provider = provider
        self.model = model
        self._api_key = api_key
        self.deadline = deadline
        self.read_timeout = transport.read_timeout
        remember(api_key)

    def remaining(self) -> float:
        """Seconds left before the call's deadline (infinite without one).

        :raises ProviderTimeoutError: the deadline has passed.
        """
        if self.deadline is None:
            return float("inf")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ProviderTimeoutError(
                "the call's deadline passed before the reply was complete. "
                "Raise CHATPLUG_TIMEOUT or pass a larger timeout= to create().",
                provider=self.provider,
                model=self.model,
            )
        return left

    def __repr__(self) -> str:
        return f"<HTTPClient provider={self.provider!r} model={self.model!r}>"

    def post_json(
        self,
        url: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> Reply:
        """POST ``body`` as JSON to ``url`` and return the :class:`Reply`.

        :raises AuthenticationError: on 401/403.
        :raises RateLimitError: on 429, with the server's ``Retry-After``.
        :raises ProviderHTTPError: on any other status >= 400.
        :raises ProviderTimeoutError: when connecting or waiting for headers times out.
        :raises ProviderConnectionError: when the server cannot be reached.
        """
        session = self.transport.session
        started = time.perf_counter()
        left = self.remaining()
        try:
            response = session.post(
                url,
                data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                headers={"Content-Type": "application/json", **(headers or {})},
                stream=True,
                timeout=(min(self.transport.connect_timeout, left),
                         min(self.read_timeout, left)),
                allow_redirects=False,
                verify=self.transport.verify,
            )
        except Exception as exc:
            raise self.translate(exc, url=url) from None
        logger.debug(
            "%s: POST %s -> %s in %.1f ms",
            self.provider,
            url,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        reply = Reply(response, self)
        if response.status_code >= 300:
            with reply:
                if response.status_code < 400:
                    raise self._redirect_error(response.status_code, reply, url)
                raise self._status_error(response.status_code, reply, url)
        return reply

    def _redirect_error(self, status: int, reply: Reply, url: str) -> ProviderHTTPError:
        location = reply.headers.get("location", "")
        return ProviderHTTPError(
            f"{status} {reply.reason}: {url} redirects to {redact(location, self._api_key)!r}. "
            "chatplug does not follow redirects (a key must never reach another host); "
            "set the provider's URL setting to the final address.",
            status_code=status,
            provider=self.provider,
            model=self.model,
        )

    def _status_error(self, status: int, reply: Reply, url: str) -> ProviderError:
        body = reply.read(limit=ERROR_BODY_LIMIT, fail=False)
        reason = _error_message_from_body(body)
        excerpt = redact(reason, self._api_key) if reason else _excerpt(body, self._api_key)
        label = f"{status} {reply.reason}".strip()
        said = f": {excerpt}" if excerpt else ""
        context: dict[str, Any] = {"provider": self.provider, "model": self.model}
        if status in (401, 403):
            return AuthenticationError(
                f"the server refused the API key ({label}){said}. "
                "Check the key you configured for this provider.",
                status_code=status,
                **context,
            )
        if status == 429:
            after = _retry_after(reply.headers)
            wait = f" The server asks to wait {after:g} s." if after is not None else ""
            return RateLimitError(
                f"rate limited ({label}){said}.{wait} Retry later or lower the request rate.",
                body=excerpt,
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
            f"{label}{said}.{hint}", status_code=status, body=excerpt, **context
        )

    def translate(self, exc: BaseException, *, url: str | None = None) -> ChatplugError:
        """Map a requests/urllib3/socket exception to chatplug's error for it."""
        import requests
        import urllib3.exceptions as u3

        context: dict[str, Any] = {"provider": self.provider, "model": self.model}
        where = f" {url}" if url else ""
        detail = redact(str(exc), self._api_key)
        if isinstance(exc, ChatplugError):
            return exc
        timed_out = isinstance(exc, (requests.Timeout, u3.TimeoutError, TimeoutError))
        if timed_out and self.deadline is not None and time.monotonic() >= self.deadline - 0.01:
            return ProviderTimeoutError(
                "the call's deadline passed before the reply was complete. "
                "Raise CHATPLUG_TIMEOUT or pass a larger timeout= to create().",
                **context,
            )
        if isinstance(exc, (requests.ConnectTimeout, u3.ConnectTimeoutError)):
            return ProviderTimeoutError(
                f"could not connect to{where} within {self.transport.connect_timeout:g} s. "
                "Check the URL and your network, or raise CHATPLUG_CONNECT_TIMEOUT.",
                **context,
            )
        if timed_out:
            return ProviderTimeoutError(
                f"the server{where} sent nothing for {self.read_timeout:g} s. "
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


class Reply:
    """An HTTP reply whose body has not been read yet.

    Use it as a context manager, or call :meth:`close`, so the connection goes
    back to the pool.  :meth:`iter_bytes` yields data as soon as it arrives.
    """

    def __init__(self, response: requests.Response, client: HTTPClient) -> None:
        self._response = response
        self._client = client
        self.status_code: int = response.status_code
        self.reason: str = response.reason or ""
        self.headers: Mapping[str, str] = response.headers
        self.url: str = response.url

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters (``text/event-stream``)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield the body's bytes as they arrive; transfer and content encodings undone.

        :raises StreamInterruptedError: the connection broke before the body ended.
        :raises ProviderTimeoutError: the server went silent for the read timeout.
        """
        client = self._client
        limit = client.transport.max_response_bytes
        received = 0
        try:
            for data in self._raw_chunks():
                received += len(data)
                if received > limit:
                    raise ProviderResponseError(
                        f"the reply exceeded {limit} bytes and was cut off. If it is "
                        "legitimate, raise CHATPLUG_MAX_RESPONSE_BYTES.",
                        provider=client.provider,
                        model=client.model,
                    )
                yield data
                if client.deadline is not None:
                    self._shorten_read_timeout(client.remaining())
        except ChatplugError:
            raise
        except Exception as exc:
            raise client.translate(exc, url=self.url) from None

    def _raw_chunks(self) -> Iterator[bytes]:
        raw = self._response.raw
        if raw.chunked and raw.supports_chunked_reads():
            # One network chunk at a time, the moment it is complete.
            for data in raw.read_chunked(None, decode_content=True):
                if data:
                    yield data
            return
        read1 = getattr(raw, "read1", None)
        if read1 is None:  # urllib3 < 2.3: small reads keep the stream live
            yield from raw.stream(1, decode_content=True)
            return
        while True:
            data = read1(STREAM_READ_SIZE, decode_content=True)
            if not data:
                return
            yield data

    def _shorten_read_timeout(self, left: float) -> None:
        """Near the deadline, make the next socket read give up when the deadline comes."""
        if left < self._client.read_timeout:
            connection = getattr(self._response.raw, "connection", None)
            sock = getattr(connection, "sock", None)
            if sock is not None:
                sock.settimeout(max(left, 0.001))

    def read(self, *, limit: int | None = None, fail: bool = True) -> bytes:
        """Read the whole body (at most ``limit`` bytes when given).

        With ``fail=False`` a broken connection returns what arrived instead of raising.
        """
        parts: list[bytes] = []
        size = 0
        try:
            for data in self.iter_bytes():
                parts.append(data)
                size += len(data)
                if limit is not None and size >= limit:
                    break
        except ChatplugError:
            if fail:
                raise
        body = b"".join(parts)
        return body[:limit] if limit is not None else body

    def json(self) -> Any:
        """The body parsed as JSON.

        :raises ProviderResponseError: the body is not JSON (an HTML page, say).
        """
        body = self.read()
        try:
            try:
                return json.loads(body)
            except UnicodeDecodeError:
                # Like the event stream: UTF-8 whatever is claimed, bad bytes replaced.
                return json.loads(body.decode("utf-8", "replace"))
        except ValueError:
            kind = self.content_type or "no content type"
            raise ProviderResponseError(
                f"expected JSON from {self.url} but got {kind}: "
                f"{_excerpt(body, self._client._api_key)!r}. "
                "Check the provider's URL setting: it may point at a web page, not the API.",
                provider=self._client.provider,
                model=self._client.model,
            ) from None

    def close(self) -> None:
        """Release the connection (it is not reused if the body was not read to the end)."""
        self._response.close()

    def __enter__(self) -> Reply:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
