"""Keeping API keys out of text: error messages, log records, anything a server echoes.

:func:`redact` removes a secret from a text in every form a server or a
library re-encodes it: as is, JSON-escaped (``\\/``, ``\\u00..``), percent- or
form-encoded (a redirect's ``Location``), HTML-escaped, ``repr()``-escaped (an
exception's text), with its inner whitespace collapsed or re-encoded.  A key
shorter than :data:`SHORT_KEY` characters (a NextChat access code) is masked
where it stands as a token of its own, so that a short key does not blank every
word containing its letters.  Of a longer key, any prefix of :data:`SHORT_KEY`
characters or more is masked too: servers echo a key shortened
(``Incorrect API key provided: sk-proj-AbCd1234...``).  The values of authorization headers, and the
``user:password@`` part of any URL, are masked too.

:func:`install_log_redaction` wraps the logging record factory, so every record
of every logger (chatplug's children added later, urllib3's, a plugin's own) is
redacted when it is made, before any handler sees it.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from typing import Any

__all__ = ["MASK", "SHORT_KEY", "RedactingFilter", "install_log_redaction", "redact",
           "remember", "strip_userinfo"]

MASK = "***"
#: Keys shorter than this are masked only as whole tokens.
SHORT_KEY = 8
_HEADER = re.compile(
    r"(?i)(\b(?:authorization|proxy-authorization|api-key|x-api-key)['\"]?\s*[:=]\s*['\"]?)"
    r"(?:bearer\s+|basic\s+)?[^\s'\",}]+"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@'\"<>]*@")
#: A run of whitespace inside a key, as it may come back: collapsed, or encoded.
_SPACE = r"(?:\s|\+|%20|%09|\\t|\\u0020|\\u0009|&#32;|&#9;|&#x20;|&#x9;|&nbsp;)+"
_SHORT_ESCAPES = {"/": "\\/", '"': '\\"', "'": "\\'", "\\": "\\\\", "\t": "\\t",
                  "\n": "\\n", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}

_known: set[str] = set()
_combined: _Masker | None = None
_lock = threading.Lock()


def _hex(number: int, width: int) -> str:
    """``number`` in hexadecimal, either case."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d
                   for d in f"{number:0{width}X}")


def _char(c: str) -> str:
    """Every form one character of a key may take in an echoed text."""
    return "(?:" + "|".join(_forms(c)) + ")"


def _forms(c: str) -> list[str]:
    """The forms of :func:`_char`, the character itself first."""
    code = ord(c)
    forms = [re.escape(c), "".join("%" + _hex(b, 2) for b in c.encode("utf-8"))]
    if code < 0x10000:
        forms.append(r"\\u" + _hex(code, 4))
    else:  # JSON writes it as a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(r"\\u" + _hex(high, 4) + r"\\u" + _hex(low, 4))
        forms.append(r"\\U" + _hex(code, 8))
    if code < 0x100:
        forms.append(r"\\x" + _hex(code, 2))
    forms.append(f"&#0*{code};")
    forms.append("&#[xX]0*" + _hex(code, 1 if code < 16 else len(f"{code:X}")) + ";")
    if c in _SHORT_ESCAPES:
        forms.append(re.escape(_SHORT_ESCAPES[c]))
    if c in _HTML:
        forms.append(re.escape(_HTML[c]))
    return forms


def _body(secret: str) -> str:
    """A regular expression of ``secret`` in every form it may take."""
    parts: list[str] = []
    for c in secret:
        if c.isspace():
            if not parts or parts[-1] is not _SPACE:
                parts.append(_SPACE)
        else:
            parts.append(_char(c))
    return "".join(parts)


@functools.lru_cache(maxsize=256)
def _pattern(secret: str) -> str:
    """What a search looks for: a short key as a token of its own; of a longer key its
    first :data:`SHORT_KEY` characters (:func:`_extent` finds how much more follows)."""
    if len(secret) < SHORT_KEY:
        return rf"(?<![0-9A-Za-z])(?:{_body(secret)})(?![0-9A-Za-z])"
    return f"(?:{_body(secret[:SHORT_KEY])})"


@functools.lru_cache(maxsize=256)
def _compiled(secret: str) -> re.Pattern[str]:
    return re.compile(f"(?:{_body(secret)})")


@functools.lru_cache(maxsize=256)
def _head(secret: str) -> re.Pattern[str]:
    return re.compile(_pattern(secret))


@functools.lru_cache(maxsize=1024)
def _one(c: str) -> re.Pattern[str]:
    """One character of a key in any form, the escaped forms tried before the character
    itself (``\\\\`` is one escaped backslash, not two)."""
    if c.isspace():
        return re.compile(f"(?:{_SPACE})?")
    forms = _forms(c)
    return re.compile("(?:" + "|".join(forms[1:] + forms[:1]) + ")")


def _extent(secret: str, text: str, start: int, end: int) -> int:
    """Where the key, or the longest prefix of it, that begins at ``start`` ends
    (its first :data:`SHORT_KEY` characters end at ``end``)."""
    whole = _compiled(secret).match(text, start)
    if whole is not None:
        return whole.end()
    for c in secret[SHORT_KEY:]:
        found = _one(c).match(text, end)
        if found is None:
            break
        end = found.end()
    return end


@functools.lru_cache(maxsize=64)
def _masker(secrets: tuple[str, ...]) -> _Masker:
    return _Masker(set(secrets))


class _Masker:
    """Masks every key of a set, each whole or as a prefix, in one search of a text."""

    __slots__ = ("long", "pattern")

    def __init__(self, secrets: set[str]) -> None:
        # Longest first: a key containing another is masked whole.
        ordered = sorted(secrets, key=len, reverse=True)
        self.pattern = re.compile("|".join(_pattern(secret) for secret in ordered))
        self.long = [secret for secret in ordered if len(secret) >= SHORT_KEY]

    def mask(self, text: str) -> str:
        found = self.pattern.search(text)
        if found is None:
            return text
        pieces: list[str] = []
        done = 0
        while found is not None:
            start, end = found.span()
            for secret in self.long:  # keys sharing a head: the one that goes furthest
                head = _head(secret).match(text, start)
                if head is not None:
                    end = max(end, _extent(secret, text, start, head.end()))
            pieces.append(text[done:start])
            pieces.append(MASK)
            done = end
            found = self.pattern.search(text, end)
        pieces.append(text[done:])
        return "".join(pieces)


def strip_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL masked."""
    return _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text) if "@" in text else text


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with ``secret`` and every key the transport has used replaced by ``***``
    (in any of the forms a server or library re-encodes it), the values of
    authorization headers masked, and URLs' ``user:password@`` removed."""
    if secret and secret.strip() and secret not in _known:
        text = _masker((secret,)).mask(text)
    combined = _combined
    if combined is not None:
        text = combined.mask(text)
    return strip_userinfo(_HEADER.sub(lambda m: m.group(1) + MASK, text))


def remember(secret: str | None) -> None:
    """Register a key so that every later text and log record is redacted of it."""
    global _combined
    if not secret or not secret.strip() or secret in _known:
        return
    with _lock:
        _known.add(secret)
        _combined = _Masker(_known)


def _clean(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(text)
        if cleaned != text:
            record.exc_text = cleaned  # handlers use it instead of formatting the traceback


class RedactingFilter(logging.Filter):
    """Masks keys and authorization header values in every record it sees (for a
    handler of an application's own; chatplug redacts every record already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _clean(record)
        return True


_installed = False


def install_log_redaction() -> None:
    """Redact every log record when it is made, whatever its logger (once per process).

    The record factory is wrapped rather than a filter attached per logger: filters
    on a logger do not see its children's records, and a logger added later
    (``chatplug.wire.openai``, a plugin's own) must not print a key either.
    """
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _clean(record)
            return record

        logging.setLogRecordFactory(redacting_factory)
        _installed = True
