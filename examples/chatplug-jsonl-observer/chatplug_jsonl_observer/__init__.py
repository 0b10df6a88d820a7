"""A chatplug observer that appends one JSON line per completion event to a file.

The file is ``CHATPLUG_JSONL_PATH`` (read at each event, so it can change while
a program runs).  Without it nothing is written: installing the observer never
makes a program write files where it happens to run.
Each line has ``event`` (``request``, ``response`` or ``error``), ``time`` (UTC,
ISO 8601), ``provider``, ``model``, ``request_id`` and the event's details.
chatplug never hands an observer the key or the messages, so neither can end
up in the file.

An observer must never break a completion: a file that cannot be written is
logged (logger ``chatplug_jsonl_observer``) and the event dropped.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any

from chatplug import hookimpl

__all__ = ["ENV_PATH", "chatplug_on_error", "chatplug_on_request", "chatplug_on_response",
           "events_path"]

ENV_PATH = "CHATPLUG_JSONL_PATH"

logger = logging.getLogger(__name__)
# Completions may run in many threads; one line must never interleave with another.
_lock = threading.Lock()


def events_path() -> str | None:
    """Where events go: ``CHATPLUG_JSONL_PATH``, or ``None`` (nowhere) when it is unset."""
    return os.environ.get(ENV_PATH, "").strip() or None


def _write(event: str, **fields: Any) -> None:
    path = events_path()
    if path is None:
        return
    record = {"event": event, "time": datetime.now(timezone.utc).isoformat(), **fields}
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    try:
        with _lock, open(path, "a", encoding="utf-8") as file:
            file.write(line)
    except OSError as exc:
        logger.warning("cannot write chatplug events to %s: %s", path, exc)


@hookimpl
def chatplug_on_request(provider: str, model: str, stream: bool, request_id: str) -> None:
    _write("request", provider=provider, model=model, request_id=request_id, stream=stream)


@hookimpl
def chatplug_on_response(
    provider: str,
    model: str,
    request_id: str,
    duration_s: float,
    first_piece_s: float | None,
    pieces: int,
    characters: int,
    attempts: int,
    outcome: str,
) -> None:
    _write("response", provider=provider, model=model, request_id=request_id,
           duration_s=round(duration_s, 6),
           first_piece_s=None if first_piece_s is None else round(first_piece_s, 6),
           pieces=pieces, characters=characters, attempts=attempts, outcome=outcome)


@hookimpl
def chatplug_on_error(
    provider: str,
    model: str,
    request_id: str,
    duration_s: float,
    attempts: int,
    error: Exception,
) -> None:
    # chatplug's error messages are already free of keys; only the headline is kept.
    message = str(error).splitlines()[0] if str(error) else ""
    _write("error", provider=provider, model=model, request_id=request_id,
           duration_s=round(duration_s, 6), attempts=attempts,
           error=type(error).__name__, message=message,
           status_code=getattr(error, "status_code", None))
