"""Wire formats that live once in core; providers only name their endpoint and options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["base64_data_url", "request_headers", "token_count"]


def request_headers(accept: str, api_key: str | None = None,
                    headers: Mapping[str, str] | None = None, *,
                    key_header: str | None = None) -> dict[str, str]:
    """The headers of a chat request: ``Accept``, the provider's own ``headers``, and
    ``api_key`` when given: as a bearer token (``Authorization: Bearer <api_key>``), or
    as it is in ``key_header`` (Anthropic's ``x-api-key``, Google's ``x-goog-api-key``)."""
    all_headers = {"Accept": accept}
    if headers:
        all_headers.update(headers)
    if api_key:
        if key_header is None:
            all_headers["Authorization"] = f"Bearer {api_key}"
        else:
            all_headers[key_header] = api_key
    return all_headers


def base64_data_url(url: str, where: str, vendor: str) -> tuple[str, str]:
    """The media type and base64 data of a ``data:<type>;base64,<data>`` URL.

    :raises InvalidRequestError: another kind of data URL (``vendor`` takes only base64).
    """
    from ..errors import InvalidRequestError

    header, _, data = url[len("data:"):].partition(",")
    media_type, _, encoding = header.partition(";")
    if encoding != "base64" or not data:
        raise InvalidRequestError(f"{where}: {vendor} takes base64 data URLs "
                                  "(data:image/png;base64,...), not this one.")
    return media_type, data


def token_count(value: Any) -> int | None:
    """A token count as a server reported it; anything but a non-negative whole number
    (a negative, a bool, a text, NaN) is no count: ``None``."""
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and value >= 0 and value.is_integer():
        return int(value)
    return None
