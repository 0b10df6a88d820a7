"""Wire formats that live once in core; providers only name their endpoint and options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["request_headers", "token_count"]


def request_headers(accept: str, api_key: str | None = None,
                    headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers of a chat request: ``Accept``, the provider's own ``headers``, and
    ``api_key`` as a bearer token (``Authorization: Bearer <api_key>``) when given."""
    all_headers = {"Accept": accept}
    if headers:
        all_headers.update(headers)
    if api_key:
        all_headers["Authorization"] = f"Bearer {api_key}"
    return all_headers


def token_count(value: Any) -> int | None:
    """A token count as a server reported it; anything but a non-negative whole number
    (a negative, a bool, a text, NaN) is no count: ``None``."""
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and value >= 0 and value.is_integer():
        return int(value)
    return None
