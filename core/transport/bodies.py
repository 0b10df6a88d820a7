"""What a server says went wrong in a body, read once for the transport and every wire format.

Servers put their error in a body in one of a few shapes:

- ``{"error": {"message": ..., "type": ..., "code": ...}}``: OpenAI, and the servers
  that copy it (vLLM, llama.cpp, LiteLLM);
- ``{"error": "text"}``: Ollama;
- ``{"error": true, "msg": ...}`` / ``{"error": true, "message": ...}``:
  ChatGPT-Next-Web (NextChat);
- ``{"detail": "text"}`` or ``{"detail": [{"msg": ...}]}``: FastAPI-based servers;
- ``{"type": "error", "error": {"type", "message"}}``: Anthropic;
- ``{"error": {"code", "message", "status", "details": [...]}}``: Google (Gemini), whose
  ``details`` may say why (``ErrorInfo.reason``, ``API_KEY_INVALID``) and when to retry
  (``RetryInfo.retryDelay``, ``"37s"``).

:func:`error_of` reads any of them into a :class:`ServerError`; the transport
uses :func:`body_error` for the body of an HTTP error status, and
:func:`chatplug.wire.errors.reported_error` turns one that arrived inside a
``200`` reply into chatplug's typed error.  It lives with the transport, which
needs it first, so that the transport never imports the wire formats above it.
:func:`excerpt` makes the short text an error message quotes, and it masks keys
*before* it cuts, so a key echoed near the cut point never leaves a part of itself
behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .redaction import redact

__all__ = [
    "EXCERPT_LENGTH",
    "MARGIN",
    "WINDOW",
    "ServerError",
    "body_error",
    "error_of",
    "excerpt",
    "model_refused",
    "sentence",
]

#: The longest excerpt of a server's text quoted in a message.
EXCERPT_LENGTH = 200
#: Characters of a (possibly huge) text looked at to make an excerpt.
WINDOW = 16 * 1024
#: Dropped from the end of a clipped window after masking: a key cut by the window
#: itself lies within its last characters, and no key is longer than this.
MARGIN = 1024


@dataclass(frozen=True, slots=True)
class ServerError:
    """An error a server reported: its message (whitespace collapsed, neither
    masked nor cut; ``""`` when it gave none), its ``type`` (or Google's ``status``) and
    ``code`` if any (Google's is its HTTP status, a number), OpenAI's ``param``, the
    ``reason`` Google's ``ErrorInfo`` gives, and the seconds its ``RetryInfo`` asks to
    wait."""

    message: str
    type: str = ""
    code: str = ""
    reason: str = ""
    retry_after: float | None = None
    param: str = ""

    @property
    def symbol(self) -> str:
        """The error's code as a client matches on it (``context_length_exceeded``):
        ``code`` unless it is a number (Google's repeats the HTTP status), else
        Google's ``ErrorInfo`` reason; ``""`` without either."""
        return self.code if self.code and not self.code.isdigit() else self.reason

    @property
    def rate_limited(self) -> bool:
        marks = f"{self.type} {self.code}".lower()
        return ("rate_limit" in marks or "quota" in marks or "resource_exhausted" in marks
                or self.code == "429")

    @property
    def refused_key(self) -> bool:
        marks = f"{self.type} {self.code} {self.reason}".lower()
        return "api_key" in marks or "auth" in marks or self.code == "401"


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _detail(detail: Any) -> str:
    if isinstance(detail, Mapping):
        return _text(detail.get("message") or detail.get("msg"))
    if isinstance(detail, list):
        return "; ".join(_text(item.get("msg")) if isinstance(item, Mapping) else _text(item)
                         for item in detail[:5])
    return _text(detail)


def _details(details: Any) -> tuple[str, float | None]:
    """Google's ``details``: the ``ErrorInfo`` reason and the ``RetryInfo`` delay."""
    reason, wait = "", None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("ErrorInfo") and isinstance(detail.get("reason"), str):
            reason = detail["reason"]
        elif kind.endswith("RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    seconds = float(delay[:-1])
                except ValueError:
                    continue
                if seconds >= 0 and seconds == seconds:  # not NaN
                    wait = seconds
    return reason, wait


def error_of(payload: Any) -> ServerError | None:
    """The error ``payload`` reports, in any of the shapes above; ``None`` if it reports none.

    ``{"detail": ...}`` counts only in an object without ``choices`` (a chat reply that
    happens to carry such a key is not an error).
    """
    if not isinstance(payload, Mapping):
        return None
    error = payload.get("error")
    if isinstance(error, Mapping):
        code, kind, param = error.get("code"), error.get("type"), error.get("param")
        if not isinstance(kind, str):
            kind = error.get("status")  # Google's envelope
        reason, wait = _details(error.get("details"))
        return ServerError(
            _text(error.get("message")) or _text(error.get("msg")),
            type=kind if isinstance(kind, str) else "",
            code="" if code is None or isinstance(code, bool) else str(code),
            reason=reason,
            retry_after=wait,
            param=param if isinstance(param, str) else "",
        )
    if error is True:  # NextChat: {"error": true, "msg" | "message": ...}
        return ServerError(_text(payload.get("msg")) or _text(payload.get("message")))
    if isinstance(error, str) and error.strip():
        return ServerError(_text(error))
    if error and not isinstance(error, bool):  # a number, a list: still an error
        return ServerError(_text(json.dumps(error)))
    if "detail" in payload and "choices" not in payload and payload["detail"]:
        return ServerError(_detail(payload["detail"]))
    return None


_REFUSAL = re.compile(r"not allowed|no access|not have access|not permitted|forbidden|"
                      r"not available|restricted", re.IGNORECASE)


def model_refused(message: str, model: str | None) -> bool:
    """Whether a 403's message says the *model* is not allowed (NextChat's
    "you are not allowed to use gpt-4 model"), rather than the key refused."""
    lowered = message.lower()
    return "model" in lowered and (bool(_REFUSAL.search(message))
                                   or (model is not None and model.lower() in lowered))


def body_error(body: bytes) -> ServerError | None:
    """The error in the body of an HTTP error status, if it is JSON in a known shape."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return error_of(payload)


def excerpt(text: str | bytes, secret: str | None = None, limit: int = EXCERPT_LENGTH) -> str:
    """``text`` made short enough to quote: keys masked first, then whitespace
    collapsed, then cut to at most ``limit`` characters, at the end of a word where
    one ends in the last fifth (ending in ``…`` when cut: never mid-word in prose).

    Bytes are decoded as UTF-8, bad bytes replaced.  ``secret`` is masked, and so is
    every key the transport has used (see :func:`chatplug.transport.redaction.redact`).
    """
    clipped = len(text) > WINDOW
    window = text[:WINDOW]
    shown = window.decode("utf-8", "replace") if isinstance(window, bytes) else window
    shown = redact(shown, secret)
    if clipped:
        shown = shown[:-MARGIN]
    shown = " ".join(shown.split())
    if len(shown) > limit:
        cut = shown[: limit - 1]
        space = cut.rfind(" ")
        if space >= limit * 4 // 5 and space > 0:  # a word ends near the limit: cut there
            cut = cut[:space].rstrip(",;:")
        shown = cut + "…"
    return shown


def sentence(text: str) -> str:
    """``text`` ending as a sentence: a full stop added unless it already ends in one
    (so that "key." never becomes "key.." in a message)."""
    return text if text.endswith((".", "!", "?")) else text + "."
