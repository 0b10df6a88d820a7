"""An HTTP reply whose body is read live, within the call's deadline and size limit.

:meth:`Reply.iter_bytes` hands on each network chunk the moment it is complete
(``read_chunked``) or whatever bytes are there (``read1``), so no token waits
for a buffer to fill.  Every failure is a :class:`chatplug.ChatplugError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import ChatplugError, ProviderResponseError
from . import failures, watchdog

if TYPE_CHECKING:
    import requests

    from .client import HTTPClient

__all__ = ["STREAM_READ_SIZE", "Reply"]

#: Bytes asked of the socket per read while streaming.  Reads return as soon as
#: any data is there (``read1``), so this bounds memory, it never delays a token.
STREAM_READ_SIZE = 16 * 1024


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
        self._sock = sock
        if sock is not None:
            client.context.attach(sock)  # cancelling the call ends a blocked read
            if client.deadline is not None:
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
        self._detach()
        if self._watch is not None:
            key, self._watch = self._watch, None
            if not watchdog.unwatch(key):
                self._client.remaining()  # raises: the deadline passed

    def _detach(self) -> None:
        if self._sock is not None:
            self._client.context.detach(self._sock)
            self._sock = None

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
        self._detach()
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
