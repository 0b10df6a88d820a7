"""Server-sent events decoded from raw bytes, as the WHATWG spec describes.

Lines end at CR, LF or CRLF, also when the CR and the LF arrive in separate
network reads; a line is decoded as UTF-8 only once it is whole, so a
multi-byte character split across reads is never mangled (undecodable bytes
become U+FFFD, as in browsers' EventSource).  One leading UTF-8 byte-order mark
is ignored, as WHATWG's decoding says.  Nothing is held back: a line is handed
on the moment its terminator arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["BOM", "LineSplitter", "SSEDecoder", "ServerSentEvent", "iter_events"]

#: The UTF-8 byte-order mark, ignored once at the start of a stream.
BOM = b"\xef\xbb\xbf"
#: ``data:`` lines of one event kept apart before they are joined into one string:
#: a million short lines must not cost a million string objects.
_DATA_RUN = 4096
#: Bytes of an incomplete event :meth:`SSEDecoder.feed_data` keeps aside at most; a longer
#: event goes to the line decoder.
_PENDING_LIMIT = 64 * 1024


@dataclass(slots=True)
class ServerSentEvent:
    """One dispatched event; ``data`` joins multi-line ``data:`` fields with ``\\n``."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class LineSplitter:
    """Split a byte stream into lines on CR, LF and CRLF without waiting for more data.

    :meth:`feed` returns the lines completed by a chunk (terminators removed);
    :meth:`pending` is the unterminated tail, which at end of stream means the
    last line was cut.  A byte-order mark at the very start is dropped.
    """

    __slots__ = ("_buffer", "_head", "_parts", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = b""
        # Reads of a long line without a terminator are kept apart and joined once,
        # so a 10 MB line costs one copy, not one per read.
        self._parts: list[bytes] = []
        self._skip_lf = False
        # The first bytes, until they are known not to be (or to end) a byte-order mark.
        self._head: bytes | None = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._head is not None:
            chunk = self._head + chunk
            if len(chunk) < len(BOM) and BOM.startswith(chunk):
                self._head = chunk  # it may still be a mark split across reads
                return []
            self._head = None
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM):]
        if self._skip_lf:
            # The previous chunk ended in CR; a LF starting this one is the same line break.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return []
        if b"\n" not in chunk and b"\r" not in chunk:
            if self._buffer:
                self._parts.append(self._buffer)
                self._buffer = b""
            self._parts.append(chunk)
            return []
        if self._parts:
            self._parts.append(self._buffer)
            self._buffer = b"".join(self._parts)
            self._parts = []
        data = self._buffer + chunk if self._buffer else chunk
        lines = data.splitlines(keepends=True)
        last = lines[-1]
        if last[-1:] in (b"\n", b"\r"):
            self._buffer = b""
            self._skip_lf = last[-1:] == b"\r"
        else:
            self._buffer = lines.pop()
        return [
            line[:-2] if line[-2:] == b"\r\n" else line[:-1]
            for line in lines
        ]

    @property
    def idle(self) -> bool:
        """True when no partial line is buffered (the next byte starts a new line) and
        the start of the stream (a possible byte-order mark) is behind."""
        return (not self._buffer and not self._parts and not self._skip_lf
                and self._head is None)

    @property
    def pending(self) -> bytes:
        if self._head:
            return self._head
        if self._parts:
            return b"".join([*self._parts, self._buffer])
        return self._buffer


class SSEDecoder:
    """Incremental event-stream decoder: feed bytes, get :class:`ServerSentEvent` objects."""

    __slots__ = ("_data", "_event", "_id", "_last_id", "_lines", "_loose", "_pending",
                 "_retry")

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._data: list[str] = []
        self._loose = 0  # data lines at the end of _data not yet joined into a run
        self._event = ""
        self._id: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None
        #: feed_data's bytes of an incomplete event, not yet given to the line decoder.
        self._pending = b""

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by ``chunk``."""
        self._settle()
        return self._feed_lines(chunk)

    def feed_data(self, chunk: bytes) -> list[str]:
        """The ``data`` of each event completed by ``chunk``: all most wire formats need.

        The common case takes a fast path: the decoder holds no partial line or
        field, the chunk has no CR, and an event is one ``data: `` line (or an
        ``event: `` line and one ``data: `` line, Anthropic's grammar).  Bytes
        after the chunk's last event are kept as they are until the event is
        complete (a bulk read rarely ends at an event boundary); they cannot
        complete an event on their own.  Anything else goes through the full
        decoder, so the result is always what :meth:`feed` would give.
        """
        pending = self._pending
        if pending:
            chunk = pending + chunk
            self._pending = b""
        if b"\r" in chunk or self._data or self._event or not self._lines.idle:
            return [event.data for event in self._feed_lines(chunk)]
        end = chunk.rfind(b"\n\n")
        if end < 0:
            if len(chunk) > _PENDING_LIMIT:
                # A long event: the line decoder joins its reads once, not at every read.
                return [event.data for event in self._feed_lines(chunk)]
            self._pending = chunk
            return []
        if end + 2 < len(chunk):
            self._pending = chunk[end + 2:]
        if self._id is not None:
            self._promote_id()
        # UTF-8 never puts a LF inside a character: decoding the events at once gives
        # what decoding them line by line gives.
        text = chunk[:end].decode("utf-8", "replace")
        if text.startswith("data: "):
            found = text[6:].split("\n\ndata: ")
            if text.count("\n") == 2 * len(found) - 2:
                # Every LF is in a separator: each event is one "data: " line.
                return found
        found = []
        for block in text.split("\n\n"):
            if block.startswith("data: ") and "\n" not in block:
                found.append(block[6:])
                continue
            if block.startswith("event: "):
                # A named event (Anthropic's grammar): its name line, then one data line.
                data = block.find("\ndata: ")
                if data > 0 and "\n" not in block[7:data] and "\n" not in block[data + 7:]:
                    found.append(block[data + 7:])
                    continue
            found.extend(event.data for event in self._feed_lines(
                block.encode("utf-8") + b"\n\n"))
        return found

    def _settle(self) -> None:
        """Hand the kept bytes of an incomplete event to the full decoder (at the end)."""
        if self._pending:
            pending, self._pending = self._pending, b""
            self._feed_lines(pending)  # they complete no event (see feed_data)

    def _promote_id(self) -> None:
        if self._id is not None:
            self._last_id = self._id
            self._id = None

    def _feed_lines(self, chunk: bytes) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        for raw in self._lines.feed(chunk):
            event = self._process_line(raw.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def end(self) -> list[ServerSentEvent]:
        """Signal a clean end of stream.

        Fields whose lines were complete but never followed by the blank
        dispatch line are still dispatched (servers often omit the final blank
        line).  An unterminated last line was cut in transit and is dropped, so
        a truncated JSON chunk never reaches the parser.
        """
        self._settle()
        if self._data:
            event = self._process_line("")
            return [event] if event is not None else []
        return []

    @property
    def cut_line(self) -> bool:
        """True when bytes of an unterminated line are buffered."""
        self._settle()
        return bool(self._lines.pending)

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # comment, used as keep-alive
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._loose += 1
            if self._loose == _DATA_RUN:
                self._data[-_DATA_RUN:] = ["\n".join(self._data[-_DATA_RUN:])]
                self._loose = 0
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self._promote_id()
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._last_id,
            retry=self._retry,
        )
        self._data = []
        self._loose = 0
        self._event = ""
        return event


def iter_events(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    """Decode an iterable of byte chunks into events, including those at a clean end."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.end()
