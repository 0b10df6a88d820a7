"""The bytes of one HTTP/1.1 request, checked before anything is sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from ..decoding import ACCEPT_ENCODING
from ..failures import InvalidHeader, InvalidURL

__all__ = ["request_bytes"]

#: RFC 9110's token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: What requests' requote_uri leaves unquoted in a request target.
_SAFE = "!#$%&'()*+,/:;=?@[]~"
#: Parsed URLs: a process talks to a few endpoints, each parsed once.
_targets: dict[str, tuple[tuple[str, str, int], str, str]] = {}


def _header_line(name: str, value: str) -> bytes:
    if type(value) is not str or not _TOKEN.fullmatch(name) or (
            "\n" in value or "\r" in value or "\0" in value) or value[:1] in (" ", "\t"):
        raise InvalidHeader(f"invalid header {name!r}: a header name is a token and a value "
                            "a string without leading whitespace, line breaks or NUL")
    # Encoded on its own, so a character that is not Latin-1 is reported at its place
    # in the value (UnicodeEncodeError), as the sync transport reports it.
    return b"%s: %s\r\n" % (name.encode("ascii"), value.encode("latin-1"))


def _target(url: str) -> tuple[tuple[str, str, int], str, str]:
    """``((scheme, host, port), request target, Host header)`` of ``url``."""
    known = _targets.get(url)
    if known is not None:
        return known
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        raise InvalidURL(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        explicit = parts.port
    except ValueError as exc:
        raise InvalidURL(f"{url!r} has an invalid port") from exc
    # Quoted as requests quotes it (requote_uri): spaces, non-ASCII and control characters
    # percent-encoded, existing escapes and reserved characters left alone.
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                   safe=_SAFE)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURL(f"{url!r} has a host name that cannot be encoded") from exc
    authority = f"[{host}]" if ":" in host else host
    if explicit:
        authority += f":{explicit}"
    known = ((scheme, host, explicit or (443 if scheme == "https" else 80)), target, authority)
    if len(_targets) < 1024:
        _targets[url] = known
    return known


def request_bytes(method: str, url: str, data: bytes | None,
                  headers: Mapping[str, str]) -> tuple[tuple[str, str, int], bytes]:
    """The connection key and the bytes of one request.

    :raises InvalidURL: not an http(s) URL with a host.
    :raises InvalidHeader: a header cannot be sent; ``UnicodeEncodeError`` for one that
        is not Latin-1.
    """
    from ..client import USER_AGENT

    key, target, authority = _target(url)
    fields = {"host": ("Host", authority), "user-agent": ("User-Agent", USER_AGENT),
              "accept-encoding": ("Accept-Encoding", ACCEPT_ENCODING),
              "accept": ("Accept", "*/*"), "connection": ("Connection", "keep-alive")}
    for name, value in headers.items():
        fields[name.lower()] = (name, value)
    if data is not None:
        fields["content-length"] = ("Content-Length", str(len(data)))
    head = b"".join([_header_line(name, value) for name, value in fields.values()])
    payload = f"{method} {target} HTTP/1.1\r\n".encode("ascii") + head + b"\r\n"
    return key, payload + data if data is not None else payload
