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
import threading
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import failures, watchdog
from .errors import (
    ChatplugError,
    InvalidRequestError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from .redaction import install_log_redaction, remember

if TYPE_CHECKING:
    import requests

    from .settings import Settings

__all__ = ["HTTPClient", "Reply", "Transport"]

logger = logging.getLogger("chatplug.http")

#: Bytes asked of the socket per read while streaming.  Reads return as soon as
#: any data is there (``read1``), so this bounds memory, it never delays a token.
STREAM_READ_SIZE = 16 * 1024
USER_AGENT = "chatplug/0.1"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


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
        self._proxies: dict[str, dict[str, str]] = {}
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

        pools = watchdog.connection_pool_classes()

        class WatchedAdapter(HTTPAdapter):
            """Connections whose header read ends at the call's deadline."""

            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = pools

            def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
                manager = super().proxy_manager_for(proxy, **kwargs)
                manager.pool_classes_by_scheme = pools
                return manager

        session = requests.Session()
        adapter = WatchedAdapter(pool_connections=16, pool_maxsize=self.pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        session.verify = self.verify
        # requests re-reads the whole environment on every request (proxies, CA
        # bundle, ~/.netrc): measurable on each call.  chatplug reads proxies once
        # per host (proxies_for), the CA bundle through its settings, and never
        # sends ~/.netrc credentials to a provider.
        session.trust_env = False
        return session

    def proxies_for(self, url: str) -> dict[str, str]:
        """The proxy to use for ``url``'s host, from ``HTTP(S)_PROXY``/``NO_PROXY``
        as they were when the host was first used."""
        origin = "/".join(url.split("/", 3)[:3])
        proxies = self._proxies.get(origin)
        if proxies is None:
            from requests.utils import get_environ_proxies

            proxies = self._proxies[origin] = dict(get_environ_proxies(origin))
        return proxies

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
    Connect and read timeouts never exceed what is left of the call's deadline, and the
    deadline watchdog ends any read still blocked when it passes.
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

    @property
    def api_key(self) -> str | None:
        """The call's key (the provider already has it; used to redact server text)."""
        return self._api_key

    def translate(self, exc: BaseException, *, url: str | None = None) -> ChatplugError:
        """Map a requests/urllib3/socket exception to chatplug's error for it."""
        return failures.translate(self, exc, url=url)

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
        try:
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"the request body cannot be sent as JSON ({exc}); NaN and Infinity are "
                "not JSON numbers.",
                provider=self.provider,
                model=self.model,
            ) from None
        session = self.transport.session
        started = time.perf_counter()
        left = self.remaining()
        try:
            with watchdog.deadline_scope(self.deadline):
                response = session.post(
                    url,
                    data=data,
                    headers={"Content-Type": "application/json", **(headers or {})},
                    stream=True,
                    timeout=(min(self.transport.connect_timeout, left),
                             min(self.read_timeout, left)),
                    allow_redirects=False,
                    verify=self.transport.verify,
                    proxies=self.transport.proxies_for(url),
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
                    raise failures.redirect_error(self, response.status_code, reply, url)
                raise failures.status_error(self, response.status_code, reply, url)
        return reply

class Reply:
    """An HTTP reply whose body has not been read yet.

    Use it as a context manager, or call :meth:`close`, so the connection goes
    back to the pool.  :meth:`iter_bytes` yields data as soon as it arrives.
    """

    def __init__(self, response: requests.Response, client: HTTPClient) -> None:
        self._response = response
        self._client = client
        self._chunks: Iterator[bytes] | None = None
        self._watch: int | None = None
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        if client.deadline is not None and sock is not None:
            # Reading the body ends at the deadline even if bytes keep trickling in.
            self._watch = watchdog.watch(sock, client.deadline)
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
        deadline = client.deadline if client.deadline is not None else float("inf")
        received = 0
        if self._chunks is None:
            self._chunks = self._raw_chunks()
        try:
            for data in self._chunks:
                received += len(data)
                if received > limit:
                    raise ProviderResponseError(
                        f"the reply exceeded {limit} bytes and was cut off. If it is "
                        "legitimate, raise CHATPLUG_MAX_RESPONSE_BYTES.",
                        provider=client.provider,
                        model=client.model,
                    )
                yield data
                if time.monotonic() > deadline:
                    client.remaining()  # raises: the deadline passed between reads
            # urllib3 has just given the connection back to the pool; stop watching at
            # once (a deadline passing in these microseconds would cut the next user's read).
            self._unwatch()
        except ChatplugError:
            raise
        except Exception as exc:
            raise client.translate(exc, url=self.url) from None

    def _raw_chunks(self) -> Iterator[bytes]:
        raw = self._response.raw
        if raw.chunked and raw.supports_chunked_reads():
            # One network chunk at a time, the moment it is complete.
            return (data for data in raw.read_chunked(None, decode_content=True) if data)
        read1 = getattr(raw, "read1", None)
        if read1 is None:  # urllib3 < 2.3: small reads keep the stream live
            return raw.stream(1, decode_content=True)
        return iter(lambda: read1(STREAM_READ_SIZE, decode_content=True), b"")

    def _set_read_timeout(self, seconds: float) -> None:
        connection = getattr(self._response.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            sock.settimeout(max(seconds, 0.001))

    def drain(self, *, limit: int = 64 * 1024, wait: float = 1.0) -> None:
        """Read what is left of a complete reply (the end of a chunked body after
        ``[DONE]``), so that the connection goes back to the pool instead of being
        closed.  Gives up quietly after ``limit`` bytes or ``wait`` seconds of silence.
        """
        if self._chunks is None:
            return
        try:
            self._set_read_timeout(min(wait, self._client.read_timeout))
            left = limit
            for data in self._chunks:
                left -= len(data)
                if left < 0:
                    return
            self._unwatch()
        except Exception:
            return  # the connection is simply not reused

    def _unwatch(self) -> None:
        """Stop the deadline watch; the body is complete (or abandoned).

        :raises ProviderTimeoutError: the watchdog had already cut the body short, so
            an apparently clean end was really the deadline.
        """
        if self._watch is not None:
            key, self._watch = self._watch, None
            if not watchdog.unwatch(key):
                self._client.remaining()  # raises: the deadline passed

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
        except (ValueError, RecursionError):
            kind = self.content_type or "no content type"
            raise ProviderResponseError(
                f"expected JSON from {self.url} but got {kind}: "
                f"{failures.excerpt(body, self._client.api_key)!r}. "
                "Check the provider's URL setting: it may point at a web page, not the API.",
                provider=self._client.provider,
                model=self._client.model,
            ) from None

    def close(self) -> None:
        """Release the connection (it is not reused if the body was not read to the end)."""
        if self._watch is not None:
            watchdog.unwatch(self._watch)
            self._watch = None
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
