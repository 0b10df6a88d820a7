"""The routes a registry hands out: built over its providers, and the named ones of
``CHATPLUG_ROUTES`` and the aliases that list several targets (``CHATPLUG_MODELS``,
``[models]``), read on first need: a provider lookup never reads them.

A named route that cannot be built, or whose name is a provider's (which name
would ``get`` mean?), is a load error of the registry (``route:<name>`` in
``registry.errors``, logged), never a reason to stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, InvalidRequestError, ProviderNotFoundError
from ..routes.entries import Entry, RouteSpec, parse_entry

if TYPE_CHECKING:
    from ..calls.provider import Provider
    from ..calls.runtime import Runtime
    from ..routes.route import Route

__all__ = ["alias_routes", "build_route", "load_named_routes"]

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
    specs: Sequence[tuple[RouteSpec, str]],
    providers: Mapping[str, Provider],
    build: Callable[..., Route],
) -> tuple[dict[str, Route], dict[str, str]]:
    """The named routes by lower-cased name, and the load errors ``{"route:<name>":
    reason}`` of those that could not be made.

    :param specs: each route with where it was defined (``CHATPLUG_ROUTES``,
        ``CHATPLUG_MODELS``, ``[models] in <file>``), for the errors; a name already
        taken by an earlier spec is an error.
    :param providers: the loaded providers by lower-cased name (a route may not take one's).
    :param build: :func:`build_route` bound to the registry (``entries, name=, **options``).
    """
    routes: dict[str, Route] = {}
    errors: dict[str, str] = {}
    for spec, where in specs:
        key = f"route:{spec.name}"
        if spec.name.lower() in providers:
            errors[key] = (f"the route name {spec.name!r} is a provider's name; rename the "
                           f"route in {where}")
        elif spec.name.lower() in routes:
            errors[key] = f"the route name {spec.name!r} is taken; rename it in {where}"
        else:
            try:
                routes[spec.name.lower()] = build(spec.entries, name=spec.name, **spec.options)
            except (ProviderNotFoundError, InvalidRequestError) as exc:
                errors[key] = f"{where}: {exc.message}"
            else:
                continue
        logger.warning("route %r was not loaded: %s", spec.name, errors[key])
    return routes, errors


def alias_routes(models: Mapping[str, str | tuple[str, ...]], origins: Mapping[str, str]
                 ) -> list[tuple[RouteSpec, str]]:
    """The aliases that list several targets, as route specs (``CHATPLUG_MODELS`` or
    ``[models]``: ``{"smart": ["OpenAI/gpt-4.1", "GravityEngine"]}``).

    :raises ConfigurationError: an entry is malformed (the message names the alias).
    """
    specs = []
    for name, target in models.items():
        if isinstance(target, tuple):
            try:
                entries = tuple(parse_entry(item) for item in target)
            except InvalidRequestError as exc:
                raise ConfigurationError(f"{origins[name]}: alias {name!r}: "
                                         f"{exc.message}") from None
            specs.append((RouteSpec(name, entries), origins[name]))
    return specs
