"""What a route is made of: entries, and named routes from ``CHATPLUG_ROUTES``.

An entry is a provider name, ``"Provider/model"`` (split at the first ``/``,
so ``OpenAI/meta-llama/Llama-3`` is the OpenAI provider with model
``meta-llama/Llama-3``), or a ``(provider, model)`` pair.
``CHATPLUG_ROUTES`` holds JSON: ``{"fast": ["GravityEngine", "OpenAI/gpt-4o-mini"]}``,
or per route ``{"entries": [...], "strategy": "latency", "cooldown": 60, ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError, InvalidRequestError

__all__ = ["Entry", "RouteSpec", "parse_entry", "parse_routes"]

#: The options a named route may set in CHATPLUG_ROUTES, with their types.
_OPTIONS: dict[str, tuple[type, ...]] = {
    "strategy": (str,),
    "cooldown": (int, float),
    "allowed_fails": (int,),
    "fallback_on_client_errors": (bool,),
}


@dataclass(frozen=True)
class Entry:
    """One entry of a route: a provider, and the model it is asked for (``None``: the
    call's model, else the provider's default)."""

    provider: str
    model: str | None = None

    def __str__(self) -> str:
        return self.provider if self.model is None else f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class RouteSpec:
    """A named route as the settings describe it."""

    name: str
    entries: tuple[Entry, ...]
    options: dict[str, Any] = field(default_factory=dict)


def parse_entry(item: Any) -> Entry:
    """An :class:`Entry` from ``"Provider"``, ``"Provider/model"`` or ``(provider, model)``.

    :raises InvalidRequestError: anything else.
    """
    if isinstance(item, Entry):
        return item
    if isinstance(item, str) and item.strip():
        provider, slash, model = item.strip().partition("/")
        if slash and not model:
            raise InvalidRequestError(f"route entry {item!r} names no model after '/'.")
        if provider:
            return Entry(provider, model or None)
    elif (isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2
          and isinstance(item[0], str) and item[0].strip()
          and (item[1] is None or (isinstance(item[1], str) and item[1].strip()))):
        return Entry(item[0].strip(), item[1])
    raise InvalidRequestError(
        f"a route entry must be 'Provider', 'Provider/model' or a (provider, model) pair, "
        f"not {item!r}."
    )


def parse_routes(text: str | None) -> list[RouteSpec]:
    """The named routes of ``CHATPLUG_ROUTES``.

    :raises ConfigurationError: malformed JSON or a malformed route, naming the setting.
    """
    if text is None or not text.strip():
        return []
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"CHATPLUG_ROUTES is not valid JSON ({exc}). Expected e.g. "
            '{"fast": ["GravityEngine", "OpenAI/gpt-4o-mini"]}.'
        ) from None
    if not isinstance(payload, Mapping):
        raise ConfigurationError(
            "CHATPLUG_ROUTES must be a JSON object of route names, e.g. "
            '{"fast": ["GravityEngine", "OpenAI/gpt-4o-mini"]}.'
        )
    specs: list[RouteSpec] = []
    for name, value in payload.items():
        where = f"CHATPLUG_ROUTES[{name!r}]"
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise ConfigurationError(f"{where}: a route name must be a non-empty name "
                                     "without '/'.")
        options: dict[str, Any] = {}
        if isinstance(value, Mapping):
            unknown = set(value) - {"entries", *_OPTIONS}
            if unknown:
                raise ConfigurationError(
                    f"{where} has unknown key(s) {', '.join(sorted(map(repr, unknown)))}; "
                    f"allowed: 'entries', {', '.join(map(repr, _OPTIONS))}."
                )
            for key, types in _OPTIONS.items():
                if key in value:
                    option = value[key]
                    if not isinstance(option, types) or (bool not in types
                                                         and isinstance(option, bool)):
                        raise ConfigurationError(f"{where}.{key} has the wrong type: "
                                                 f"{option!r}.")
                    options[key] = option
            value = value.get("entries")
        if (not isinstance(value, Sequence) or isinstance(value, str) or not value):
            raise ConfigurationError(f"{where} must list its entries, e.g. "
                                     '["GravityEngine", "OpenAI/gpt-4o-mini"].')
        try:
            entries = tuple(parse_entry(item) for item in value)
        except InvalidRequestError as exc:
            raise ConfigurationError(f"{where}: {exc.message}") from None
        specs.append(RouteSpec(name.strip(), entries, options))
    return specs
