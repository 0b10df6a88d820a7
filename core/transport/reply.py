"""An HTTP reply whose body is read live, within the call's deadline and size limit.

:meth:`Reply.iter_bytes` hands on each network chunk the moment it is complete
(``read_chunked``) or whatever bytes are there (``read1``), so no token waits
for a buffer to fill.  Reads are bounded (:data:`STREAM_READ_SIZE`) and content
encodings are undone a piece at a time (:mod:`~chatplug.transport.decoding`), so
``CHATPLUG_MAX_RESPONSE_BYTES`` bounds memory, not just what is handed on.
Every failure is a :class:`chatplug.ChatplugError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ..errors import ChatplugError, ProviderResponseError
from . import failures
from .chunked import bulk_reader, payload
from .decoding import MAX_CODINGS, ContentDecoder, TooManyEncodings, UnsupportedEncoding
from .pending import Pending

if TYPE_CHECKING:
    import requests

    from .client import HTTPClient

__all__ = ["DRAIN_BYTES", "DRAIN_SECONDS", "STREAM_READ_SIZE", "Reply"]

#: Bytes asked of the socket per read while streaming.  Reads return as soon as
#: any data is there (``read1``), so this bounds memory, it never delays a token.
STREAM_READ_SIZE = 16 * 1024
#: What draining a complete reply (for reuse of its connection) may cost at most,
#: all reads together: after that the connection is closed instead.
DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 0.25


class Reply:
    """An HTTP reply whose body has not been read yet.

    Use it as a context manager, or call :meth:`close`, so the connection goes
    back to the pool.  :meth:`iter_bytes` yields data as soon as it arrives.
    """

    def __init__(self, response: requests.Response, client: HTTPClient) -> None:
        self._response = response
        self._client = client
        #: Bytes; a native reply's also its Pending waits.
        self._chunks: Iterator[Any] | None = None
        self._complete = False
        self._received = 0
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
        :raises ProviderTimeoutError: the server went silent for the read timeout, or
            the call's deadline passed.
        :raises ProviderResponseError: the body is larger than
            ``CHATPLUG_MAX_RESPONSE_BYTES``, or its content encoding is broken.
        """
        client = self._client
        context = client.context
        limit = client.transport.max_response_bytes
        deadline = context.deadline if context.deadline is not None else float("inf")
        monotonic = time.monotonic
        try:
            if self._chunks is None:
                self._chunks = self._decoded()
            for data in self._chunks:
                if type(data) is Pending:  # a native reply waiting: its driver awaits this
                    yield data  # type: ignore[misc]
                    continue
                self._received += len(data)
                if self._received > limit:
                    raise ProviderResponseError(
                        f"the reply exceeded {limit} bytes and was cut off. If it is "
                        "legitimate, raise CHATPLUG_MAX_RESPONSE_BYTES.",
                        provider=client.provider,
                        model=client.model,
                    )
                yield data
                if monotonic() > deadline or context.cancelled:
                    context.check()  # raises: the deadline passed, or the call was cancelled
            if context.expired or context.cancelled:
                # A body the watchdog (or a cancel) cut short can look like a clean end
                # (a close-delimited body): it is not.
                context.check()
            self._complete = True
        except ChatplugError:
            raise
        except Exception as exc:
            raise client.translate(exc, url=self.url) from None

    def _decoded(self) -> Iterator[bytes]:
        try:
            decoder = ContentDecoder(self.headers.get("content-encoding", ""))
        except UnsupportedEncoding as exc:
            raise ProviderResponseError(
                f"the reply uses the content encoding {str(exc)!r}, which chatplug does not "
                "decode (it asks for gzip or deflate).",
                provider=self._client.provider, model=self._client.model,
            ) from None
        except TooManyEncodings as exc:
            raise ProviderResponseError(
                f"the reply's Content-Encoding chains {exc} codings; chatplug undoes at most "
                f"{MAX_CODINGS} (no server needs more), so the reply was refused.",
                provider=self._client.provider, model=self._client.model,
            ) from None
        raw = self._raw_chunks()
        return raw if decoder.identity else decoder.decode(raw)

    def _raw_chunks(self) -> Iterator[bytes]:
        raw = self._response.raw
        if raw.chunked and raw.supports_chunked_reads():
            fp = bulk_reader(raw)
            if fp is not None:
                # Whatever has arrived, framing removed (one event per chunk is common).
                return payload(raw, fp, STREAM_READ_SIZE)
            # A network chunk at a time, the moment it is complete; a chunk larger than
            # a read is handed on a read at a time.
            chunks = raw.read_chunked(STREAM_READ_SIZE, decode_content=False)
            return (data for data in chunks if data)
        read1 = getattr(raw, "read1", None)
        if read1 is None:  # urllib3 < 2.3: small reads keep the stream live
            return iter(raw.stream(1, decode_content=False))
        return iter(lambda: read1(STREAM_READ_SIZE, decode_content=False), b"")

    def _set_read_timeout(self, seconds: float) -> None:
        connection = getattr(self._response.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            sock.settimeout(max(seconds, 0.001))

    def drain(self, *, limit: int = DRAIN_BYTES, wait: float = DRAIN_SECONDS) -> None:
        """Read what is left of a complete reply (the end of a chunked body after
        ``[DONE]``), so that the connection goes back to the pool instead of being
        closed.  Gives up quietly after ``limit`` bytes or ``wait`` seconds, counted
        over all reads together: a server dribbling after the end never holds the
        reply back longer than that.
        """
        if self._chunks is None or self._complete:
            return
        try:
            self._set_read_timeout(min(wait, self._client.read_timeout))
            left = limit
            with self._client.context.cut_off_after(wait):
                ends = time.monotonic() + wait
                for data in self._chunks:
                    left -= len(data)
                    if left < 0 or time.monotonic() > ends:
                        return
        except Exception:
            return  # the connection is simply not reused

    def read(self, *, limit: int | None = None, fail: bool = True) -> bytes:
        """Read the whole body (at most ``limit`` bytes when given).

        With ``fail=False`` a broken connection returns what arrived instead of raising.
        A native reply returns what has arrived without waiting (all of an error body,
        which is prefetched).
        """
        parts: list[bytes] = []
        size = 0
        try:
            for data in cast("Iterator[Any]", self.iter_bytes()):
                if type(data) is Pending:
                    break  # more would mean waiting: a sync read never sees this
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
        """The body parsed as JSON (a leading byte-order mark is ignored).

        :raises ProviderResponseError: the body is not JSON (an HTML page, say).
        """
        return self._parse_json(self.read())

    def load_json(self) -> Generator[Pending[Any], None, Any]:
        """:meth:`json` for a generator: ``payload = yield from reply.load_json()``.

        On a native reply it yields while the body arrives; on the sync one it
        never yields.  Raises what :meth:`json` raises.
        """
        parts: list[bytes] = []
        for data in cast("Iterator[Any]", self.iter_bytes()):
            if type(data) is Pending:
                yield data
            else:
                parts.append(data)
        return self._parse_json(b"".join(parts))

    def _parse_json(self, body: bytes) -> Any:
        try:
            try:
                return json.loads(body)
            except UnicodeDecodeError:
                # Like the event stream: UTF-8 whatever is claimed, bad bytes replaced.
                return json.loads(body.decode("utf-8-sig", "replace"))
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
