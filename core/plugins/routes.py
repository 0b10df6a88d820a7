"""The routes a registry hands out: built over its providers, and the named ones of
``CHATPLUG_ROUTES`` (read on first need: a provider lookup never reads them).

A named route that cannot be built, or whose name is a provider's (which name
would ``get`` mean?), is a load error of the registry (``route:<name>`` in
``registry.errors``, logged), never a reason to stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, ProviderNotFoundError
from ..routes.entries import Entry, parse_entry, parse_routes

if TYPE_CHECKING:
    from ..calls.provider import Provider
    from ..calls.runtime import Runtime
    from ..routes.route import Route

__all__ = ["build_route", "load_named_routes"]

logger = logging.getLogger("chatplug.registry")


def build_route(
    entries: Sequence[str | tuple[str, str | None] | Entry],
    provider: Callable[[str], Provider],
    runtime: Runtime,
    *,
    name: str | None = None,
    **options: Any,
) -> Route:
    """A :class:`Route` over ``entries``, each provider found by ``provider(name)``.

    :raises ProviderNotFoundError: an entry names no installed provider.
    :raises InvalidRequestError: a malformed entry or option.
    """
    from ..routes.route import Route

    parsed = [parse_entry(entry) for entry in entries]
    providers = [provider(entry.provider) for entry in parsed]
    # Entries name providers as their users spell them; keep the provider's own name.
    parsed = [Entry(p.name, e.model) for e, p in zip(parsed, providers, strict=True)]
    label = name or "+".join(str(entry) for entry in parsed)
    return Route(label, parsed, providers, runtime, **options)


def load_named_routes(
    text: str | None,
    providers: Mapping[str, Provider],
    build: Callable[..., Route],
) -> tuple[dict[str, Route], dict[str, str]]:
    """The routes of ``CHATPLUG_ROUTES`` (``text``) by lower-cased name, and the load
    errors ``{"route:<name>": reason}`` of those that could not be made.

    :param providers: the loaded providers by lower-cased name (a route may not take one's).
    :param build: :func:`build_route` bound to the registry (``entries, name=, **options``).
    :raises ConfigurationError: CHATPLUG_ROUTES is malformed.
    """
    routes: dict[str, Route] = {}
    errors: dict[str, str] = {}
    for spec in parse_routes(text):
        key = f"route:{spec.name}"
        if spec.name.lower() in providers:
            errors[key] = (f"the route name {spec.name!r} is a provider's name; rename the "
                           "route in CHATPLUG_ROUTES")
        else:
            try:
                routes[spec.name.lower()] = build(spec.entries, name=spec.name, **spec.options)
            except (ProviderNotFoundError, InvalidRequestError) as exc:
                errors[key] = f"CHATPLUG_ROUTES: {exc.message}"
            else:
                continue
        logger.warning("route %r was not loaded: %s", spec.name, errors[key])
    return routes, errors
