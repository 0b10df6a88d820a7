"""Content encodings (``gzip``, ``deflate``, chains of them) undone a little at a time.

urllib3 inflates a whole read at once: one HTTP chunk of half a megabyte of
gzip becomes half a gigabyte in memory before anyone can count it.  Here each
layer hands on at most :data:`PIECE` bytes per step, so the size limit is
checked on decoded bytes as they are produced and memory stays a small
constant whatever the compression ratio or the nesting.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

__all__ = ["ACCEPT_ENCODING", "MAX_CODINGS", "PIECE", "ContentDecoder", "TooManyEncodings",
           "UnsupportedEncoding"]

#: What chatplug asks servers for: exactly what it can decode incrementally.
ACCEPT_ENCODING = "gzip, deflate"
#: The most bytes one decoding step produces.
PIECE = 64 * 1024
#: The most codings one reply may chain (``gzip, deflate``): each layer holds a zlib
#: window and a generator, so a chain of hundreds would hold megabytes per call (and a
#: thousand would overflow the stack); no server needs more than two.
MAX_CODINGS = 2
#: Compressed bytes kept to retry a "deflate" body as raw deflate (servers differ).
_REPLAY_LIMIT = 64 * 1024


class UnsupportedEncoding(ValueError):
    """The reply uses a content encoding chatplug does not decode."""


class TooManyEncodings(ValueError):
    """The reply chains more than :data:`MAX_CODINGS` content encodings."""


class _Inflate:
    """One ``gzip`` or ``deflate`` layer."""

    __slots__ = ("_gzip", "_members", "_obj", "_replay", "_swallow")

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._obj = zlib.decompressobj(31 if gzip else 15)
        # "deflate" is zlib-wrapped by the standard, raw deflate by some servers:
        # the first bytes are kept to start over as raw deflate if zlib refuses them.
        self._replay: bytearray | None = None if gzip else bytearray()
        self._members = 0
        self._swallow = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._replay is not None:
            self._replay += data
            if len(self._replay) > _REPLAY_LIMIT:
                self._replay = None
        more = False  # the last step filled its output: zlib may hold more for us
        while (data or more) and not self._swallow:
            try:
                out = self._obj.decompress(data, PIECE)
            except zlib.error:
                if self._replay is not None:  # not zlib: raw deflate, from the start
                    data, self._replay = bytes(self._replay), None
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                if self._members:  # bytes after a complete gzip member: ignored
                    self._swallow = True
                    return
                raise
            more = len(out) == PIECE
            if out:
                self._replay = None
                yield out
            if self._obj.eof:
                rest = self._obj.unused_data
                if not (self._gzip and rest):
                    self._swallow = True  # the end of the stream: trailing bytes ignored
                    return
                self._members += 1  # another gzip member follows
                self._obj = zlib.decompressobj(31)
                data, more = rest, False
            else:
                data = self._obj.unconsumed_tail

    def flush(self) -> bytes:
        if self._swallow:
            return b""
        return self._obj.flush()


class ContentDecoder:
    """Undoes a ``Content-Encoding`` header's chain of encodings, incrementally.

    :raises UnsupportedEncoding: an encoding other than gzip, deflate or identity.
    :raises TooManyEncodings: more than :data:`MAX_CODINGS` of them.
    """

    __slots__ = ("_layers",)

    def __init__(self, content_encoding: str) -> None:
        # Listed in the order they were applied; undone in reverse.
        names = [name for name in (e.strip().lower() for e in content_encoding.split(","))
                 if name not in ("", "identity")]
        if len(names) > MAX_CODINGS:
            raise TooManyEncodings(len(names))
        for name in names:
            if name not in ("gzip", "x-gzip", "deflate"):
                raise UnsupportedEncoding(name)
        self._layers = [_Inflate(gzip=name != "deflate") for name in reversed(names)]

    @property
    def identity(self) -> bool:
        """True when nothing needs decoding."""
        return not self._layers

    def decode(self, raw: Iterable[bytes]) -> Iterator[bytes]:
        """The decoded bytes of ``raw``, at most :data:`PIECE` bytes at a time.

        :raises zlib.error: the compressed data is broken.
        """
        pieces: Iterable[bytes] = raw
        for layer in self._layers:
            pieces = self._through(layer, pieces)
        return iter(pieces)

    @staticmethod
    def _through(layer: _Inflate, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            if type(piece) is not bytes:  # a native reply's Pending: passed up to its driver
                yield piece
                continue
            yield from layer.feed(piece)
        rest = layer.flush()
        if rest:
            # Still bounded: what zlib holds back at the end is at most its window.
            yield rest
