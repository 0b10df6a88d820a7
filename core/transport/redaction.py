"""Keeping API keys out of text: error messages, log records, anything a server echoes.

:func:`redact` removes one known secret from a text.  :class:`RedactingFilter`
is installed on chatplug's loggers and on urllib3's, so that even at DEBUG no
record carries an ``Authorization``/``api-key`` header value or a key the
transport has used.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["RedactingFilter", "install_log_redaction", "redact", "remember"]

MASK = "***"
_HEADER = re.compile(
    r"(?i)(\b(?:authorization|proxy-authorization|api-key|x-api-key)['\"]?\s*[:=]\s*['\"]?)"
    r"(?:bearer\s+|basic\s+)?[^\s'\",}]+"
)
_known: set[str] = set()
_lock = threading.Lock()
#: Loggers that may see request details: chatplug's own, and the HTTP stack under it.
LOGGERS = ("chatplug", "chatplug.http", "chatplug.registry", "chatplug.provider",
           "urllib3", "urllib3.connectionpool", "urllib3.connection", "requests")


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with ``secret`` (and every key the transport has used) replaced by ``***``,
    and the values of authorization headers masked."""
    if secret and len(secret) >= 4 and secret in text:
        text = text.replace(secret, MASK)
    for known in _known:
        if known in text:
            text = text.replace(known, MASK)
    return _HEADER.sub(lambda m: m.group(1) + MASK, text)


def remember(secret: str | None) -> None:
    """Register a key so that log records mentioning it are redacted."""
    if secret and len(secret) >= 4 and secret not in _known:
        with _lock:
            _known.add(secret)


class RedactingFilter(logging.Filter):
    """Masks keys and authorization header values in every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_installed = False


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to the loggers in :data:`LOGGERS` (once)."""
    global _installed
    if _installed:
        return
    with _lock:
        if not _installed:
            shared = RedactingFilter()
            for name in LOGGERS:
                logging.getLogger(name).addFilter(shared)
            _installed = True
