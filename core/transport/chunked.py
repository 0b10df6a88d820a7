"""A chunked body read in bulk: everything that has arrived, framing removed, at once.

urllib3's ``read_chunked`` hands on one HTTP chunk per iteration, with a
``readline``, a regular expression and two reads each.  An event stream sends one
event per chunk, so on a fast stream that framing cost more than decoding the
event itself.  :func:`payload` reads whatever the socket buffer holds
(``read1``: never waits for more than one read), removes the chunk framing of all
of it, and hands the payload bytes on in one piece; a chunk cut by the read is
handed on as far as it arrived.  So it is as live as a per-chunk reader and costs
one pass over the bytes.

At the terminating chunk the trailers are read and the connection goes back to
urllib3's pool, as ``read_chunked`` does.  A body that breaks the framing raises
:class:`~chatplug.transport.failures.IncompleteBody`; socket errors and timeouts
pass through (the reply translates both).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .failures import IncompleteBody

__all__ = ["MAX_LINE", "bulk_reader", "payload"]

#: The longest chunk-size or trailer line accepted (urllib3's bound).
MAX_LINE = 64 * 1024
#: State: the CRLF that ends a chunk's payload is expected next.
_END_OF_DATA = -1


def bulk_reader(raw: Any) -> Any:
    """The socket file of urllib3 response ``raw`` if :func:`payload` can read its
    body, else ``None`` (then ``read_chunked`` does): a chunked, unread, non-HEAD
    http.client response whose file has ``read1``."""
    original = getattr(raw, "_original_response", None)
    fp = getattr(original, "fp", None)
    if (fp is None or getattr(original, "chunk_left", 0) is not None
            or getattr(original, "_method", "HEAD") == "HEAD"
            or getattr(raw, "chunk_left", 0) is not None
            or not hasattr(fp, "read1") or not callable(getattr(raw, "release_conn", None))):
        return None
    return fp


def payload(raw: Any, fp: Any, size: int) -> Iterator[bytes]:
    """The payload bytes of ``raw``'s chunked body (``fp`` from :func:`bulk_reader`),
    as they arrive, at most about ``size`` bytes read at a time.

    :raises IncompleteBody: the framing is broken, or the body ended before its
        terminating chunk.
    """
    read1 = fp.read1
    rest = b""  # framing bytes not yet parsed (a size line cut by a read)
    left = 0  # payload bytes of the current chunk still to come; _END_OF_DATA: its CRLF
    while True:
        data = read1(size)
        if not data:
            raise IncompleteBody("the connection closed before the chunked body ended")
        if rest:
            data = rest + data
            rest = b""
        end = len(data)
        if left > 0 and left >= end:
            # Inside one chunk: all of it is payload (the streaming common case).
            left -= end
            if left == 0:
                left = _END_OF_DATA
            yield data
            continue
        parts: list[bytes] = []
        position = 0
        while position < end:
            if left > 0:
                stop = position + left
                if stop > end:
                    left = stop - end
                    parts.append(data[position:])
                    break
                parts.append(data[position:stop])
                position = stop
                left = _END_OF_DATA
            if left == _END_OF_DATA:
                if end - position < 2:
                    if data[position:] not in (b"", b"\r"):
                        raise IncompleteBody("a chunk of the body is longer than it said")
                    rest = data[position:]
                    break
                if data[position:position + 2] != b"\r\n":
                    raise IncompleteBody("a chunk of the body is longer than it said")
                position += 2
                left = 0
                continue
            newline = data.find(b"\n", position)
            if newline < 0:
                rest = data[position:]
                if len(rest) > MAX_LINE:
                    raise IncompleteBody("a chunk-size line of the body is too long")
                break
            line = data[position:newline].split(b";", 1)[0]
            try:
                left = int(line, 16)
            except ValueError:
                raise IncompleteBody(f"a chunk size of the body is not a number: "
                                     f"{line[:40]!r}") from None
            if left < 0:
                raise IncompleteBody("a chunk size of the body is negative")
            position = newline + 1
            if left == 0:
                if parts:
                    yield b"".join(parts)
                _finish(raw, fp, data[position:])
                return
        if parts:
            yield parts[0] if len(parts) == 1 else b"".join(parts)


def _finish(raw: Any, fp: Any, after: bytes) -> None:
    """Read the trailers that follow the terminating chunk (``after``: those already
    read), then give the connection back to the pool."""
    while True:
        newline = after.find(b"\n")
        if newline < 0:
            if len(after) > MAX_LINE:
                raise IncompleteBody("a trailer line of the body is too long")
            more = fp.readline(MAX_LINE + 1)
            if not more:
                break  # some servers end without the last CRLF, as urllib3 accepts
            after += more
            continue
        line, after = after[:newline], after[newline + 1:]
        if line in (b"", b"\r"):
            break
    raw._original_response.close()
    if after:
        # Bytes after the body would frame the next reply on this connection: close it.
        connection = getattr(raw, "connection", None)
        if connection is not None:
            connection.close()
    raw.release_conn()
