"""Chat messages: the one shape every provider receives.

A non-empty list of ``{"role": "system" | "user" | "assistant", "content": str}``
(plus an optional ``name``).  Checked before anything is sent; the provider gets
a private copy, so it can never change the caller's list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequestError

__all__ = ["ROLES", "validate_messages"]

ROLES = ("system", "user", "assistant")
_MESSAGE_KEYS = frozenset({"role", "content", "name"})


def validate_messages(messages: Any) -> list[dict[str, str]]:
    """Check the chat messages and return a private copy of them.

    :raises InvalidRequestError: naming the offending message and field.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidRequestError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
            f"not {type(messages).__name__}."
        )
    if not messages:
        raise InvalidRequestError(
            "messages is empty: pass at least one {'role': 'user', 'content': '...'}."
        )
    checked: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(
                f"{where} must be a dict with 'role' and 'content', not {type(message).__name__}."
            )
        extra = set(message) - _MESSAGE_KEYS
        if extra:
            raise InvalidRequestError(
                f"{where} has unknown key(s) {', '.join(sorted(map(repr, extra)))}; "
                "allowed: 'role', 'content', 'name'."
            )
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequestError(
                f"{where}.role is {role!r}; it must be one of {', '.join(ROLES)}."
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise InvalidRequestError(
                f"{where}.content must be a string, not {type(content).__name__}."
            )
        if not content:
            raise InvalidRequestError(f"{where}.content is empty.")
        if not content.isascii():
            try:
                content.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidRequestError(
                    f"{where}.content is not valid Unicode text: {exc.reason} at position "
                    f"{exc.start} (undecoded bytes from a file or terminal?)."
                ) from None
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidRequestError(f"{where}.name must be a string.")
        checked.append(dict(message))
    return checked
