"""chatplug's own call options, checked before anything is sent.

``create()`` and ``complete()`` (and their async forms, and routes) take, next
to the provider's parameters, the options of :data:`chatplug.hooks.CALL_OPTIONS`:
``timeout``, ``max_retries``, and per-call configuration as the openai SDK
offers it (``api_key``, ``url``, ``headers``, ``extra_body``).  They never reach
``params`` and work with every wire-format provider without plugin changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidRequestError

__all__ = ["CallOptions", "check_call_options"]

#: Headers a caller may not set: the transport owns them.
_TRANSPORT_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})


@dataclass(frozen=True)
class CallOptions:
    """The checked call options of one call (``None``: the setting applies)."""

    timeout: float | None = None
    max_retries: int | None = None
    api_key: str | None = field(default=None, repr=False)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    extra_body: dict[str, Any] = field(default_factory=dict, repr=False)

    def replace(self, **changes: Any) -> CallOptions:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return CallOptions(**values)


def _invalid(message: str, provider: str | None) -> InvalidRequestError:
    return InvalidRequestError(message, provider=provider)


def check_call_options(
    *,
    timeout: Any = None,
    max_retries: Any = None,
    api_key: Any = None,
    url: Any = None,
    headers: Any = None,
    extra_body: Any = None,
    provider: str | None = None,
) -> CallOptions:
    """Check the call options; the :class:`CallOptions` to run with.

    :raises InvalidRequestError: naming the option and what it must be.
    """
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float))
        or not 0 < timeout <= 86400
    ):
        raise _invalid(f"timeout must be a number of seconds in (0, 86400], not {timeout!r}.",
                       provider)
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int)
        or not 0 <= max_retries <= 10
    ):
        raise _invalid(f"max_retries must be a whole number from 0 to 10, not {max_retries!r}.",
                       provider)
    if api_key is not None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise _invalid("api_key must be a non-empty string.", provider)
        # As for configured keys: a tab can be sent (and is redacted), a line break cannot.
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in api_key):
            raise _invalid("api_key contains a line break or another control character; "
                           "copy the key again without it.", provider)
        api_key = api_key.strip()
    if url is not None:
        url = _check_url(url, provider)
    return CallOptions(
        timeout=None if timeout is None else float(timeout),
        max_retries=max_retries,
        api_key=api_key,
        url=url,
        headers=_check_headers(headers, provider),
        extra_body=_check_extra_body(extra_body, provider),
    )


def _check_url(url: Any, provider: str | None) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _invalid(f"url must be an http:// or https:// base URL, not {url!r}.", provider)
    parts = urlsplit(url)
    if not parts.hostname:
        raise _invalid(f"url {url!r} has no host.", provider)
    if parts.username is not None or parts.password is not None:
        raise _invalid("url must not carry credentials (user:password@); pass the key as "
                       "api_key= instead.", provider)
    return url.rstrip("/")


def _check_headers(headers: Any, provider: str | None) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise _invalid(f"headers must be a dict of str to str, not {type(headers).__name__}.",
                       provider)
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise _invalid(f"headers[{name!r}] must map a str name to a str value.", provider)
        if not name or any(c in name for c in " :\r\n\t") or not name.isascii():
            raise _invalid(f"headers: {name!r} is not a valid header name.", provider)
        if any(c in value for c in "\r\n\0"):
            raise _invalid(f"headers[{name!r}] contains a line break.", provider)
        if name.lower() in _TRANSPORT_HEADERS:
            raise _invalid(f"headers: {name!r} is set by the transport and cannot be "
                           "overridden.", provider)
        checked[name] = value
    return checked


def _check_extra_body(extra_body: Any, provider: str | None) -> dict[str, Any]:
    if extra_body is None:
        return {}
    if not isinstance(extra_body, Mapping) or not all(isinstance(k, str) for k in extra_body):
        raise _invalid("extra_body must be a dict with string keys, merged into the JSON body.",
                       provider)
    import json

    try:
        json.dumps(extra_body, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _invalid(f"extra_body cannot be sent as JSON: {exc}.", provider) from None
    return dict(extra_body)
