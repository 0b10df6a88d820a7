"""Which requests the gateway answers at all: the ``Host`` it is called by, a browser's
``Origin``, and JSON request bodies.  One pure ASGI middleware, outside the keys.

A gateway without keys on loopback spends its provider keys for anyone who can
reach it, and a web page the operator visits can reach it through the browser:

- **DNS rebinding**: a page on ``evil.example`` whose name then resolves to
  127.0.0.1 calls the gateway as its own origin.  Its requests name
  ``evil.example`` in ``Host``, so the gateway answers only a ``Host`` that is
  ``localhost``, an IP address (a page can only be served *from* a name), or a
  name in ``allowed_hosts`` (``*``: any); otherwise 400.
- **Cross-site requests**: a browser marks every cross-origin request with
  ``Origin`` (and same-origin POSTs, but the gateway serves no pages).  A
  request carrying an ``Origin`` that is not in ``cors_origins`` is refused with
  403; with no ``cors_origins`` every one is, and no CORS header is ever sent.
- **"Simple" POSTs** (``text/plain``, forms) need no CORS preflight, so a page
  could send one even where its answer is unreadable: every POST must be
  ``application/json`` (415 otherwise).

The checks read the raw ASGI headers once per request: a few byte comparisons
and set lookups, nothing is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .errors import GatewayError, anthropic_path

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ANY", "RequestGuard"]

#: In ``allowed_hosts`` or ``cors_origins``: any.
ANY = "*"
_LOCAL_NAMES = frozenset({b"localhost"})
_JSON = b"application/json"
_IPV4_CHARACTERS = frozenset(b"0123456789.")


def _host_name(value: bytes) -> bytes:
    """The name part of a ``Host`` value, lower case: no port, an IPv6 address bracketed."""
    if value[:1] == b"[":
        return value[:value.find(b"]") + 1].lower()
    return value.partition(b":")[0].lower()


def _is_address(name: bytes) -> bool:
    if name[:1] == b"[":
        return name[-1:] == b"]"
    return bool(name) and not set(name) - _IPV4_CHARACTERS


class RequestGuard:
    """Refuses requests naming a foreign ``Host`` (400), carrying an ``Origin`` not allowed
    (403) and POSTs that are not ``application/json`` (415)."""

    __slots__ = ("_any_host", "_any_origin", "_hosts", "_known", "_origins", "app")

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = (),
                 cors_origins: Iterable[str] = ()) -> None:
        self.app = app
        hosts = [host.strip().lower() for host in allowed_hosts]
        origins = [origin.strip().rstrip("/").lower() for origin in cors_origins]
        self._any_host = ANY in hosts
        self._any_origin = ANY in origins
        self._hosts = _LOCAL_NAMES | {_host_name(host.encode()) for host in hosts
                                      if host and host != ANY}
        self._origins = frozenset(origin.encode() for origin in origins if origin != ANY)
        #: Host values already accepted: the next request with one costs a set lookup.
        self._known: set[bytes] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = content_type = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"content-type":
                content_type = value
            elif name == b"origin":
                origin = value
        if host is not None and host not in self._known and not self._host_allowed(host):
            refusal = _refusal(400, "host_not_allowed", (
                f"the Host header names {_shown(host)}, which this gateway does not serve. "
                "If that is the gateway's own name, add it to CHATPLUG_SERVER_ALLOWED_HOSTS "
                "(chatplug serve --allowed-host)."))
        elif (origin is not None and not self._any_origin
              and origin.lower() not in self._origins):
            refusal = _refusal(403, "origin_not_allowed", (
                f"requests from the web origin {_shown(origin)} are not allowed: a browser "
                "page may call the gateway only when its origin is listed in "
                "CHATPLUG_SERVER_CORS_ORIGINS (chatplug serve --cors-origin)."))
        elif (scope["method"] == "POST" and content_type != _JSON
              and (content_type is None
                   or content_type.partition(b";")[0].strip().lower() != _JSON)):
            refusal = _refusal(415, "unsupported_media_type", (
                "the request body must be JSON: send Content-Type: application/json."))
        else:
            await self.app(scope, receive, send)
            return
        await refusal.send(send, anthropic=anthropic_path(scope["path"]))

    def _host_allowed(self, host: bytes) -> bool:
        name = _host_name(host)
        allowed = self._any_host or name in self._hosts or _is_address(name)
        if allowed and len(self._known) < 64:
            self._known.add(host)
        return allowed


def _refusal(status: int, code: str, message: str) -> GatewayError:
    return GatewayError(status, message, code=code, type="invalid_request_error", retry=False)


def _shown(value: bytes) -> str:
    # A client's bytes into an error message: printable, short.
    return repr(value[:100].decode("latin-1"))
