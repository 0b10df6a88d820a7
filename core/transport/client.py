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
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ChatplugError, InvalidRequestError, ProviderHTTPError, ProviderResponseError
from . import failures
from .connections import pool_classes
from .context import CallContext, call_scope
from .decoding import ACCEPT_ENCODING
from .redaction import install_log_redaction, remember
from .reply import Reply

if TYPE_CHECKING:
    import requests

    from ..settings import Settings
    from .pending import Pending

__all__ = ["HTTPClient", "Reply", "Transport"]

logger = logging.getLogger("chatplug.http")

USER_AGENT = "chatplug/0.1"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class Transport:
    """Owns the pooled session shared by every call of one registry.

    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds allowed between two reads of the reply.
    :param pool_size: connections kept per host; sized for concurrent streams.
    :param ca_bundle: a CA bundle path for TLS verification (it becomes
        :attr:`verify`); verification is always on and cannot be turned off.
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
        self.max_response_bytes = max_response_bytes
        #: Passed with every request, so REQUESTS_CA_BUNDLE cannot override our setting.
        self.verify: str | bool = ca_bundle or True
        self._session: requests.Session | None = None
        self._proxies: dict[str, dict[str, str]] = {}
        self._loop_proxies: dict[str, str | None] = {}
        self._native: bool | None = None
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
            # Every async worker may hold a connection to one host at once; a smaller
            # pool would open and discard connections ("pool is full").
            pool_size=max(64, settings.async_workers),
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

        pools = pool_classes()

        class WatchedAdapter(HTTPAdapter):
            """Connections that belong to the call using them (its deadline, its cancel)."""

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
        # Only what Reply decodes incrementally (never brotli/zstd, whatever is installed).
        session.headers["Accept-Encoding"] = ACCEPT_ENCODING
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

    def loop_proxy(self, url: str) -> str | None:
        """The proxy for ``url`` on the event-loop path (:mod:`.native`), from
        ``HTTP(S)_PROXY``/``NO_PROXY`` as they were when its host was first used.

        Read with the standard library (``urllib.request.getproxies``/``proxy_bypass``),
        so that an event loop never imports ``requests``.
        """
        origin = "/".join(url.split("/", 3)[:3])
        try:
            return self._loop_proxies[origin]
        except KeyError:
            pass
        import urllib.request
        from urllib.parse import urlsplit

        parts = urlsplit(origin)
        proxy = urllib.request.getproxies().get(parts.scheme.lower())
        if proxy is not None and urllib.request.proxy_bypass(parts.netloc):
            proxy = None
        self._loop_proxies[origin] = proxy
        return proxy

    @property
    def native(self) -> bool:
        """Whether calls an event loop drives can do their IO on it (:mod:`.native`):
        aiohttp is installed (``chatplug[async]``)."""
        if self._native is None:
            from .native import available

            self._native = available()
        return self._native

    def prepare_loop(self) -> None:
        """Import what calls on an event loop need (aiohttp) now: a server calls this
        before it serves, so that its first call does not stall the loop for the import
        (a quarter of a second on a busy machine).  Nothing happens without aiohttp."""
        if self.native:
            from .native import prepare

            prepare()

    def client(
        self,
        *,
        provider: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        deadline: float | None = None,
    ) -> HTTPClient:
        """An :class:`HTTPClient` bound to one call (``deadline`` on ``time.monotonic()``)."""
        return HTTPClient(self, CallContext(provider=provider, model=model, api_key=api_key,
                                            deadline=deadline))

    def bind(self, context: CallContext) -> HTTPClient:
        """The :class:`HTTPClient` of the call described by ``context``."""
        return HTTPClient(self, context)

    def close(self) -> None:
        """Close every pooled connection; the next request opens a new session."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()
        from .native import close_sessions

        close_sessions(self)


class HTTPClient:
    """The transport as one call of one provider sees it.

    Every error it raises is a :class:`chatplug.ChatplugError` carrying the
    provider and model, with the call's API key redacted from its text.
    Connect and read timeouts never exceed what is left of the call's deadline, and the
    deadline watchdog ends any read still blocked when it passes.
    Redirects are not followed: nothing, a key least of all, goes to a host
    other than the configured one.  The call's extra headers and body fields
    (``create(headers=..., extra_body=...)``) go with every request it sends.
    """

    def __init__(self, transport: Transport, context: CallContext) -> None:
        self.transport = transport
        self.context = context
        self.read_timeout = transport.read_timeout
        remember(context.api_key)

    @property
    def provider(self) -> str | None:
        return self.context.provider

    @property
    def model(self) -> str | None:
        return self.context.model

    @property
    def deadline(self) -> float | None:
        return self.context.deadline

    def remaining(self) -> float:
        """Seconds left before the call's deadline (infinite without one).

        :raises ProviderTimeoutError: the deadline has passed.
        """
        return self.context.remaining()

    def __repr__(self) -> str:
        return f"<HTTPClient provider={self.provider!r} model={self.model!r}>"

    @property
    def api_key(self) -> str | None:
        """The call's key (the provider already has it; used to redact server text)."""
        return self.context.api_key

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
        :raises ProviderHTTPError: on any other status >= 300 (redirects are not
            followed); ``retry_after`` holds the server's hint, if it gave one.
        :raises ProviderTimeoutError: when connecting or waiting for headers times out.
        :raises ProviderConnectionError: when the server cannot be reached.
        :raises InvalidRequestError: the body cannot be sent as JSON.
        """
        data, all_headers = self._json_request(body, headers)
        return self._checked(self.request("POST", url, data=data, headers=all_headers), url)

    def open_json(
        self, url: str, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> Generator[Pending[Any], None, Reply]:
        """:meth:`post_json` for a generator: ``reply = yield from http.open_json(...)``.

        The wire formats send with it, so that one provider function serves both
        kinds of call: on a worker thread it blocks like :meth:`post_json` (and never
        yields); on a call an event loop drives (:mod:`.native`) it yields while it
        waits.  Raises what :meth:`post_json` raises.
        """
        data, all_headers = self._json_request(body, headers)
        reply = yield from self.open("POST", url, data=data, headers=all_headers)
        return reply

    def open(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Generator[Pending[Any], None, Reply]:
        """:meth:`request` and the status checks of :meth:`post_json`, for a generator."""
        if self.context.loop is None:
            return self._checked(self.request(method, url, data=data, headers=headers), url)
        from . import native

        try:
            reply = yield from native.send(self, method, url, data, headers or {})
            if reply.status_code >= 300:
                yield from reply.prefetch(failures.ERROR_BODY_LIMIT)
        except ChatplugError:
            raise
        except Exception as exc:
            raise self.translate(exc, url=url) from None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: %s %s -> %s in %.1f ms (native)", self.provider, method, url,
                         reply.status_code, (time.perf_counter() - reply.started) * 1000)
        return self._checked(reply, url)

    def _json_request(self, body: Any, headers: Mapping[str, str] | None
                      ) -> tuple[bytes, dict[str, str]]:
        """``body`` (with the call's ``extra_body``) as JSON bytes, and the headers to send
        it with (the call's ``headers=`` last).

        :raises InvalidRequestError: it cannot be sent as JSON.
        """
        context = self.context
        all_headers = {"Content-Type": "application/json", **(headers or {}), **context.headers}
        if context.extra_body and isinstance(body, dict):
            body = {**body, **context.extra_body}
        try:
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"the request body cannot be sent as JSON ({exc}); NaN and Infinity are "
                "not JSON numbers.",
                provider=self.provider,
                model=self.model,
            ) from None
        return data, all_headers

    def get_json(self, url: str, *, headers: Mapping[str, str] | None = None) -> Any:
        """GET ``url`` (a model list, say) and return its body parsed as JSON.

        Raises the errors of :meth:`post_json`, and :class:`ProviderResponseError` for a
        body that is not JSON.
        """
        reply = self.request("GET", url, headers={
            "Accept": "application/json", **(headers or {}), **self.context.headers})
        with self._checked(reply, url):
            return reply.json()

    def _checked(self, reply: Reply, url: str) -> Reply:
        """``reply`` if its status is a success; else the typed error for it (closed)."""
        status = reply.status_code
        if status >= 300:
            with reply:
                if status < 400:
                    raise failures.redirect_error(self, status, reply, url)
                error = failures.status_error(self, status, reply, url)
                if isinstance(error, ProviderHTTPError) and error.retry_after is None:
                    # RFC 9110: the hint applies to any status it comes with (a 503 too).
                    error.retry_after = failures.retry_after(reply.headers)
                raise error
        return reply

    def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float | None = None,
    ) -> Reply:
        """Send one request within the call's deadline; the :class:`Reply`, whatever
        its status (redirects are not followed).

        :param connect_timeout: seconds to connect (default: the transport's).

        :raises ProviderTimeoutError: when connecting or waiting for headers times out,
            or the call's deadline passes.
        :raises ProviderConnectionError: when the server cannot be reached.
        """
        context = self.context
        if context.loop is not None:
            raise ProviderResponseError(
                "the provider sent a request with a blocking HTTPClient method (post_json, "
                "get_json, request) on a call an event loop runs, which it allowed by "
                "declaring native_async = True; such a provider sends only through "
                "chatplug.wire (openai.chat, ndjson.chat) or http.open_json. This is a bug "
                "in the provider; report it, or set CHATPLUG_NATIVE_ASYNC=0 meanwhile.",
                provider=self.provider, model=self.model)
        session = self.transport.session
        started = time.perf_counter()
        left = self.remaining()
        try:
            with call_scope(context):
                response = session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    stream=True,
                    timeout=(min(connect_timeout or self.transport.connect_timeout, left),
                             min(self.read_timeout, left)),
                    allow_redirects=False,
                    verify=self.transport.verify,
                    proxies=self.transport.proxies_for(url),
                )
        except Exception as exc:
            raise self.translate(exc, url=url) from None
        cut = context.failure()
        if cut is not None:
            # The headers "ended" because the watchdog (or a cancel) shut the socket:
            # what arrived is not a response.
            response.close()
            raise cut
        logger.debug(
            "%s: %s %s -> %s in %.1f ms",
            self.provider,
            method,
            url,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return Reply(response, self)
