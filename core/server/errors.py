"""chatplug's errors as OpenAI's error envelope and the HTTP status a client should see.

``{"error": {"message", "type", "param", "code"}}``; ``code`` is the error's
stable :attr:`chatplug.ChatplugError.code`.  The statuses:

- 400 the request is invalid (also an upstream 400/409/413/422, passed on);
- 404 unknown model or provider (also an upstream 404, passed on);
- 401 a missing or wrong *gateway* key;
- 429 the gateway is full, or the upstream rate-limited (its ``Retry-After`` passed on);
- 502 the upstream failed, could not be reached, sent a bad or cut reply, or
  refused the gateway's own provider key (the gateway's configuration is at
  fault: a 401 would tell the client that *its* key is wrong);
- 503 the gateway has no key configured for that provider, or is shutting down;
- 504 the upstream timed out.

An upstream HTTP error keeps what the upstream said (:class:`~chatplug.ProviderHTTPError`'s
``upstream_message``, ``upstream_code``, ``upstream_type``, ``param``): its message goes
out as the upstream wrote it, not wrapped in the gateway's words, so a chain of gateways
shows the origin's message once; its ``code``, ``type`` and ``param`` replace the
gateway's own (``context_length_exceeded`` stays ``context_length_exceeded``).

``x-should-retry: false`` (which the openai and anthropic SDKs honour) goes with every
error that retrying cannot fix, and with every error the gateway has already retried
(more than one attempt: an upstream 5xx after ``CHATPLUG_MAX_RETRIES``, a 429 it waited
on), so that retries do not multiply.  An error of one attempt that retrying may fix
says nothing: the client's own retry policy decides, with the upstream's
``Retry-After`` passed on.

On Anthropic's wire (``/v1/messages``) the same errors go out in Anthropic's
envelope, ``{"type": "error", "error": {"type", "message"}}``, with Anthropic's
types (:data:`ANTHROPIC_TYPES`); an upstream that was overloaded (503, 529) is
``529 overloaded_error`` there, as the anthropic SDKs and Claude Code expect.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from ..calls.retry import MAX_RETRY_AFTER
from ..errors import (
    AuthenticationError,
    ChatplugError,
    InvalidRequestError,
    ModelNotSupportedError,
    ProviderError,
    ProviderHTTPError,
    ProviderNotFoundError,
    ProviderTimeoutError,
    RateLimitError,
)

if TYPE_CHECKING:
    from starlette.types import Send

__all__ = ["ANTHROPIC_TYPES", "ANTHROPIC_TYPE_NAMES", "GatewayError", "anthropic_path",
           "envelope", "from_chatplug", "retried"]

#: Upstream client-error statuses passed on as they are: the request is at fault.
_PASSED_ON = frozenset({400, 404, 409, 413, 422})
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          413: "invalid_request_error", 429: "rate_limit_error"}


#: Anthropic's error type for each status it uses (any other: ``api_error``).
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   415: "invalid_request_error", 429: "rate_limit_error",
                   529: "overloaded_error"}
#: Every error type of Anthropic's API: an upstream's type among them stays on its wire.
ANTHROPIC_TYPE_NAMES = frozenset({*ANTHROPIC_TYPES.values(), "api_error", "billing_error",
                                  "timeout_error"})
#: Upstream statuses that mean "overloaded": 529 on Anthropic's wire.
_OVERLOADED = frozenset({503, 529})


def anthropic_path(path: str) -> bool:
    """Whether a request path is on Anthropic's wire (its errors in Anthropic's envelope)."""
    return path.startswith(("/v1/messages", "/messages"))


def envelope(message: str, *, type: str, code: str | None = None,
             param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class GatewayError(Exception):
    """A reply the gateway sends instead of a completion: status, envelope and headers.

    :param retry: whether the client may usefully try again (else ``x-should-retry: false``).
    :param upstream_type: the upstream's own error type: OpenAI's wire says it as it came,
        Anthropic's where it is one of Anthropic's types (:data:`ANTHROPIC_TYPE_NAMES`).
    """

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None,
                 type: str | None = None, retry_after: float | None = None,
                 retry: bool = True, overloaded: bool = False,
                 upstream_type: str | None = None, provider: str | None = None,
                 attempts: int = 0) -> None:
        super().__init__(message)
        #: The upstream was overloaded (503/529): Anthropic's wire says 529.
        self.overloaded = overloaded
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "server_error" if status == 500
                                       else "upstream_error")
        self.retry_after = retry_after
        self.retry = retry
        self.upstream_type = upstream_type
        #: The provider that failed and the attempts made (``x-chatplug-provider`` and
        #: ``x-chatplug-attempts``: the gateway's side of an upstream's error, whose
        #: message is the upstream's own).
        self.provider = provider
        self.attempts = attempts

    @property
    def body(self) -> dict[str, Any]:
        return envelope(self.message, type=self.upstream_type or self.type, code=self.code,
                        param=self.param)

    @property
    def anthropic_status(self) -> int:
        """The status on Anthropic's wire."""
        return 529 if self.overloaded else self.status

    @property
    def anthropic_body(self) -> dict[str, Any]:
        """Anthropic's envelope of this error."""
        kind = self.upstream_type
        if kind not in ANTHROPIC_TYPE_NAMES:
            kind = ANTHROPIC_TYPES.get(self.anthropic_status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}}

    def encoded(self, *, anthropic: bool = False) -> bytes:
        body = self.anthropic_body if anthropic else self.body
        return json.dumps(body, ensure_ascii=False).encode()

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(max(0, math.ceil(self.retry_after))).encode()))
        if not self.retry:
            headers.append((b"x-should-retry", b"false"))
        if self.provider:
            headers.append((b"x-chatplug-provider", self.provider.encode()))
        if self.attempts:
            headers.append((b"x-chatplug-attempts", b"%d" % self.attempts))
        return headers

    async def send(self, send: Send, headers: list[tuple[bytes, bytes]] | None = None, *,
                   anthropic: bool = False) -> None:
        """Answer with this error (the response must not have started); ``anthropic``:
        in Anthropic's envelope and status (see :func:`anthropic_path`)."""
        body = self.encoded(anthropic=anthropic)
        status = self.anthropic_status if anthropic else self.status
        await send({"type": "http.response.start", "status": status,
                    "headers": [*self.headers, (b"content-length", b"%d" % len(body)),
                                *(headers or ())]})
        await send({"type": "http.response.body", "body": body})


def _status(error: ChatplugError) -> int:
    if isinstance(error, (ProviderNotFoundError, ModelNotSupportedError)):
        return 404
    if isinstance(error, InvalidRequestError):
        return 400
    if isinstance(error, AuthenticationError):
        return 502 if error.status_code is not None else 503
    if isinstance(error, RateLimitError):
        return 429
    if isinstance(error, ProviderTimeoutError):
        return 504
    if isinstance(error, ProviderHTTPError):
        if error.status_code in _PASSED_ON:
            return error.status_code
        return 504 if error.status_code == 408 else 502
    if isinstance(error, ProviderError):
        return 502
    return 500


def retried(error: ChatplugError) -> bool:
    """Whether the gateway already tried again before giving up with ``error``."""
    return len(error.attempts) > 1


def from_chatplug(error: ChatplugError) -> GatewayError:
    """The reply for a chatplug error, with its message (which never holds a key).

    An upstream HTTP error with a message of its own goes out in the upstream's words,
    code, type and param (see the module); ``x-should-retry: false`` when retrying cannot
    help or the gateway has already retried.
    """
    status = _status(error)
    message = str(error)
    code, param, upstream_type = error.code, getattr(error, "param", None), None
    if isinstance(error, AuthenticationError):
        what = ("refused the API key the gateway is configured with"
                if error.status_code is not None else "has no API key configured on the gateway")
        message = (f"{error.provider or 'the provider'} {what}: the gateway's configuration is "
                   "at fault, not your request or your gateway key. Tell the gateway's "
                   f"operator. ({message})")
    elif isinstance(error, ProviderHTTPError):
        message = error.upstream_message or message
        code = error.upstream_code or code
        upstream_type = error.upstream_type
    retry_after = error.retry_after if isinstance(error, RateLimitError) else None
    # A wait longer than the SDKs honour (they back off briefly instead): no use retrying.
    too_long = retry_after is not None and retry_after > MAX_RETRY_AFTER
    overloaded = isinstance(error, ProviderHTTPError) and error.status_code in _OVERLOADED
    provider = error.provider if isinstance(error, ProviderError) else None
    return GatewayError(status, message, code=code, param=param, retry_after=retry_after,
                        retry=error.retryable and not retried(error) and not too_long,
                        overloaded=overloaded, upstream_type=upstream_type,
                        provider=provider,
                        attempts=(len(error.attempts) or 1) if provider else 0)
