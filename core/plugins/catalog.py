"""The model catalog: what a model name means, as users write it.

A name resolves, in this order, to

1. a provider (``"OpenAI"``: its default model) or a route (``CHATPLUG_ROUTES``,
   or an alias that lists several targets);
2. an alias the user configured: ``CHATPLUG_MODELS`` (JSON) over the ``[models]``
   table of ``chatplug.toml`` (the variable wins, name by name);
3. ``"Provider/model"`` or ``"route/model"`` (split at the first ``/``);
4. a model some provider declares (its ``model`` list);
5. a model some configured provider's server lists (:mod:`.lists`, cached).

Steps 1-4 need no network; only a name they do not know reaches step 5.  A
bare name two providers serve is :class:`AmbiguousModelError` (listing the
``Provider/model`` names); an unknown one :class:`ProviderNotFoundError` with
the closest name and the ``Provider/model`` form.  No name (``None`` or ``""``)
means the default model: ``CHATPLUG_DEFAULT_MODEL``, else ``default_model`` in
``chatplug.toml``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    AmbiguousModelError,
    ConfigurationError,
    InvalidRequestError,
    ProviderNotFoundError,
)
from .lists import ModelLists

if TYPE_CHECKING:
    from ..calls.provider import Provider
    from ..configfile import ConfigFile
    from ..routes.route import Route
    from ..settings import Settings

__all__ = ["Catalog", "Pending", "Target", "configured_models"]

#: What a name resolves to: a provider or a route, and the model it names (``None``:
#: the target's default).
Target = tuple["Provider | Route", "str | None"]
#: How deep an alias may point at another alias.
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Pending:
    """A bare model name the local steps do not know: the server lists decide."""

    name: str


def configured_models(settings: Settings, config: ConfigFile
                      ) -> tuple[dict[str, str | tuple[str, ...]], dict[str, str]]:
    """The aliases in force, ``{name: target}``, and where each came from (for errors):
    the file's ``[models]``, then ``CHATPLUG_MODELS`` over it, name by name.

    :raises ConfigurationError: CHATPLUG_MODELS is not JSON or not a table of aliases.
    """
    from ..configfile import parse_models

    models = dict(config.models)
    file_label = f"[models] in {config.path}"
    origins = dict.fromkeys(models, file_label)
    if settings.models and settings.models.strip():
        try:
            payload = json.loads(settings.models)
        except ValueError as exc:
            raise ConfigurationError(
                f"CHATPLUG_MODELS is not valid JSON ({exc}). Expected e.g. "
                '{"fast": "OpenAI/gpt-4o-mini", "smart": ["OpenAI/gpt-4.1", "GravityEngine"]}.'
            ) from None
        variable = parse_models(payload, where="CHATPLUG_MODELS")
        models.update(variable)
        origins.update(dict.fromkeys(variable, "CHATPLUG_MODELS"))
    return models, origins


class Catalog:
    """Model names of one registry.

    :param providers: the loaded providers by lower-cased name (loading them if needed).
    :param routes: the named routes by lower-cased name (alias lists included).
    :param settings: the settings in force.
    :param config: ``chatplug.toml`` (``None``: read it with :func:`load_config` on first
        need).
    :param default: the default model (``None``: :attr:`default_model`), for a registry
        that can tell it without reading all its settings.
    :param not_found: the error for an unknown name, given the names that do resolve.
    """

    def __init__(self, providers: Callable[[], Mapping[str, Provider]],
                 routes: Callable[[], dict[str, Route]],
                 settings: Callable[[], Settings], config: ConfigFile | None = None, *,
                 default: Callable[[], str | None] | None = None,
                 not_found: Callable[[str, list[str]], Exception] | None = None) -> None:
        self._providers = providers
        self._routes = routes
        self._settings = settings
        self._config = config
        self._default = default or (lambda: self.default_model)
        self._not_found = not_found or (lambda name, known: ProviderNotFoundError(
            f"no provider, route, alias or model named {name!r}."))
        self._aliases: dict[str, str] | None = None
        self.lists = ModelLists(self._sorted, lambda: self._settings().models_ttl)

    def _sorted(self) -> list[Provider]:
        return sorted(self._providers().values(), key=lambda p: p.name.lower())

    @property
    def config(self) -> ConfigFile:
        """``chatplug.toml`` as read on first need.

        :raises ConfigurationError: it exists and is malformed.
        """
        if self._config is None:
            from ..configfile import load_config

            self._config = load_config()
        return self._config

    def models(self) -> tuple[dict[str, str | tuple[str, ...]], dict[str, str]]:
        """:func:`configured_models` of this catalog's settings and file."""
        return configured_models(self._settings(), self.config)

    def aliases(self) -> dict[str, str]:
        """The aliases that name one target (``{lower-cased name: target}``); those that
        list several are routes.

        :raises ConfigurationError: CHATPLUG_MODELS or the file is malformed.
        """
        if self._aliases is None:
            models, _ = self.models()
            providers = self._providers()
            self._aliases = {name.lower(): target for name, target in models.items()
                             if isinstance(target, str) and name.lower() not in providers}
        return self._aliases

    def forget(self) -> None:
        """Read the aliases again on next use (a provider was registered)."""
        self._aliases = None

    @property
    def default_model(self) -> str | None:
        """``CHATPLUG_DEFAULT_MODEL``, else the file's ``default_model``, else ``None``."""
        chosen = self._settings().default_model
        if chosen and chosen.strip():
            return chosen.strip()
        return self.config.default_model

    def errors(self) -> dict[str, str]:
        """``{"aliases": why}`` when the aliases cannot be read, ``{"alias:<name>": why}``
        for an alias named like a provider (it is ignored)."""
        try:
            models = self.models()[0]
        except ConfigurationError as exc:
            return {"aliases": exc.message}
        providers = self._providers()
        return {f"alias:{name}": f"the alias name {name!r} is a provider's name; rename the "
                "alias" for name in models if name.lower() in providers}

    # -- resolution ----------------------------------------------------------------------

    def resolve(self, name: str | None) -> Target:
        """What ``name`` names, asking the servers' lists if needed (blocking); see
        :meth:`Registry.resolve`, which this is.

        :raises ProviderNotFoundError: unknown (``not_found``'s error).
        :raises AmbiguousModelError: several providers serve it.
        :raises InvalidRequestError: no name and no default model.
        :raises ConfigurationError: the aliases or the file are malformed.
        """
        outcome = self.local(name)
        if isinstance(outcome, Pending):
            return self._found(outcome, self.lists.listed())
        return outcome

    async def aresolve(self, name: str | None) -> Target:
        """:meth:`resolve` for an event loop (stale lists are fetched on a worker thread)."""
        outcome = self.local(name)
        if isinstance(outcome, Pending):
            return self._found(outcome, await self.lists.alisted())
        return outcome

    def _found(self, pending: Pending, lists: Mapping[str, list[str]]) -> Target:
        found = self.listed(pending, lists)
        if found is None:
            raise self._not_found(pending.name, self.known_names(lists))
        return found

    def local(self, name: str | None, depth: int = 0) -> Target | Pending:
        """Steps 1-4 of the module's order: a target, or :class:`Pending` for step 5.

        :raises InvalidRequestError: no name and no default model; an alias loop.
        :raises AmbiguousModelError: several providers declare the model.
        :raises ConfigurationError: the aliases or the file are malformed.
        """
        if name is not None and not isinstance(name, str):
            raise ProviderNotFoundError(f"a model name must be a string, not {name!r}.")
        if name is None or not name.strip():
            default = self._default()
            if default is None:
                raise InvalidRequestError(
                    "model is required: name a provider, Provider/model, a model or an "
                    "alias, or configure a default model (CHATPLUG_DEFAULT_MODEL, or "
                    "default_model in chatplug.toml).")
            name = default
        if depth > _MAX_DEPTH:
            raise InvalidRequestError(f"the alias {name!r} points at itself through other "
                                      "aliases; fix CHATPLUG_MODELS or [models].")
        key = name.strip().lower()
        provider = self._providers().get(key)
        if provider is not None:
            return provider, None
        route = self._routes().get(key)
        if route is not None:
            return route, None
        alias = self.aliases().get(key)
        if alias is not None:
            return self.local(alias, depth + 1)
        head, slash, model = name.strip().partition("/")
        if slash and model:
            target: Provider | Route | None = (self._providers().get(head.lower())
                                               or self._routes().get(head.lower()))
            if target is not None:
                return target, model
        return self._one_of(name.strip(), {p.name: p.models for p in self._sorted()},
                            declared=True) or Pending(name.strip())

    def listed(self, pending: Pending, lists: Mapping[str, list[str]]) -> Target | None:
        """Step 5: the provider whose server lists ``pending.name``, if exactly one does.

        :raises AmbiguousModelError: several do.
        """
        return self._one_of(pending.name, lists, declared=False)

    def _one_of(self, name: str, lists: Mapping[str, list[str]], *, declared: bool
                ) -> Target | None:
        owners = [provider for provider, names in lists.items() if name in names]
        if not owners:
            return None
        if len(owners) > 1:
            where = "declare" if declared else "list"
            candidates = [f"{owner}/{name}" for owner in owners]
            raise AmbiguousModelError(
                f"the model {name!r} is ambiguous: {', '.join(owners)} all {where} it. "
                f"Name one: {' or '.join(map(repr, candidates))} (or define an alias in "
                "CHATPLUG_MODELS or chatplug.toml's [models]).", candidates=candidates)
        return self._providers()[owners[0].lower()], name

    def known_names(self, lists: Mapping[str, list[str]] | None = None) -> list[str]:
        """Every name that resolves (for suggestions): providers, routes, aliases,
        declared models and those of ``lists``, bare and as ``Provider/model``."""
        names: dict[str, None] = {}
        for provider in self._sorted():
            names[provider.name] = None
            for model in [*provider.models, *(lists or {}).get(provider.name, ())]:
                names[model] = names[f"{provider.name}/{model}"] = None
        for route in self._routes().values():
            names[route.name] = None
        with contextlib.suppress(ConfigurationError):  # reported where they are read
            names.update(dict.fromkeys(self.models()[0]))
        return list(names)

    def describe(self) -> dict[str, Any]:
        """The aliases and the default model, for front ends (``chatplug models``)."""
        return {"aliases": self.models()[0], "default_model": self.default_model}
