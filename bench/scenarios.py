"""The tiny protocol between the benchmark clients and the bench server.

A client names what it wants in its user message (``bench:reply:20000:4``),
so both clients send byte-for-byte comparable requests to one fixed URL and
the server needs no per-run configuration.  Whether the reply is JSON or an
event stream follows the request's ``"stream"`` flag, as a real
OpenAI-compatible server does.

Scenarios:

``reply:N:L``
    ``N`` pieces of ``L`` characters each; as one JSON reply or as ``N``
    server-sent events (one HTTP chunk each) plus a finish chunk and
    ``[DONE]``.
``hold:MS:N``
    A stream whose first piece is ``t=<time.monotonic() of the server>``,
    written alone; then ``MS`` milliseconds of silence; then ``N - 1`` more
    pieces.  The stamp is what "time to first piece" is measured against.

This module is imported by the server and by every client process, so it
imports nothing.
"""

from __future__ import annotations

#: Where GravityEngine posts, relative to its base URL; the server accepts any
#: path ending in ``/chat/completions``.
CHAT_PATH = "/api/openai/v1/chat/completions"
#: GravityEngine's first model; the baseline names the same one.
MODEL = "gpt-3.5-turbo-16k"
PREFIX = "bench:"
#: ``GET`` it for the server's counters of accepted connections and requests.
STATS_PATH = "/bench/stats"
#: The prefix of the first piece of a ``hold`` stream (followed by the stamp).
STAMP_PREFIX = "t="
#: The letters pieces are cut from: plain ASCII, as most token text is.
ALPHABET = "lorem ipsum dolor sit amet consectetur adipiscing elit "


def piece_text(length: int) -> str:
    """The text of every piece of a ``reply`` scenario (all pieces are equal)."""
    repeats = length // len(ALPHABET) + 1
    return (ALPHABET * repeats)[:length]


def reply(pieces: int, length: int) -> str:
    """The scenario of a reply of ``pieces`` pieces of ``length`` characters."""
    return f"reply:{pieces}:{length}"


def hold(milliseconds: int, pieces: int) -> str:
    """The scenario of a stream that holds ``milliseconds`` after its first piece."""
    return f"hold:{milliseconds}:{pieces}"


def messages(scenario: str) -> list[dict[str, str]]:
    """The chat messages that ask the bench server for ``scenario``."""
    return [{"role": "user", "content": PREFIX + scenario}]


def expected_chars(scenario: str) -> int | None:
    """How many characters of text a ``reply`` scenario yields (None for ``hold``)."""
    kind, first, second = scenario.split(":")
    return int(first) * int(second) if kind == "reply" else None


def parse_stamp(piece: str) -> float:
    """The server's monotonic time carried by the first piece of a ``hold`` stream."""
    start = piece.index(STAMP_PREFIX) + len(STAMP_PREFIX)
    end = start
    while end < len(piece) and (piece[end].isdigit() or piece[end] == "."):
        end += 1
    return float(piece[start:end])
