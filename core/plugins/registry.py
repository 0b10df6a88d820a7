"""The registry: the facade over loading (:mod:`.loading`), observers (:mod:`.observers`)
and routes (:mod:`.routes`) that hands out :class:`Provider` and :class:`Route` objects.

Loading is lazy (on the first ``get``/``providers``/``errors``), happens once,
and is tolerant: a plugin that fails to load is recorded in ``errors`` and
logged, and every other provider still works.  ``CHATPLUG_STRICT_PLUGINS=1``
turns such a failure into :class:`PluginLoadError`.  The named routes of
``CHATPLUG_ROUTES`` and the aliases (``CHATPLUG_MODELS``, ``chatplug.toml``) are
read when a name is not a provider's, or when ``errors`` is read (a route that
cannot load is one of them).  What a model name means is :mod:`.catalog`'s;
:meth:`Registry.resolve` (and :meth:`Registry.aresolve` on an event loop) is the
one resolver every front end uses.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from .. import hooks
from ..calls.bound import BoundModel
from ..calls.provider import Provider
from ..calls.runtime import Runtime
from ..errors import ConfigurationError, PluginLoadError, ProviderNotFoundError
from ..routes.entries import Entry, parse_routes
from .catalog import Catalog, Target
from .contract import OBSERVER_GROUP, Observer, plugin_name
from .contract import Rejected as _LoadFailure
from .controls import PluginControls, controls_may_be_set
from .loading import Loaded
from .missing import not_found
from .routes import alias_routes, build_route, load_named_routes

T = TypeVar("T")

if TYPE_CHECKING:
    from ..configfile import ConfigFile
    from ..routes.route import Route
    from ..settings import Settings
    from ..transport.client import Transport

__all__ = ["ENTRY_POINT_GROUP", "OBSERVER_GROUP", "Registry"]

ENTRY_POINT_GROUP = "chatplug.providers"


class Registry:
    """Discovers provider plugins and hands out :class:`Provider` objects.

    :param group: the entry-point group to read.
    :param settings: settings to use instead of reading the environment.
    :param entry_points: load these instead of scanning installed distributions
        (``None``); pass ``()`` for a registry filled only by :meth:`register`.
    :param observer_entry_points: observers to load; ``None`` scans the installed
        ``chatplug.observers`` entry points when ``entry_points`` is ``None`` too,
        and loads none otherwise (an explicit registry stays explicit).
    :param config: ``chatplug.toml`` as read (``None``: read on first need, from
        ``$CHATPLUG_CONFIG`` or chatplug's config directory).
    """

    def __init__(
        self,
        *,
        group: str = ENTRY_POINT_GROUP,
        settings: Settings | None = None,
        entry_points: tuple[EntryPoint, ...] | list[EntryPoint] | None = None,
        observer_entry_points: tuple[EntryPoint, ...] | list[EntryPoint] | None = None,
        config: ConfigFile | None = None,
    ) -> None:
        self.group = group
        self._settings = settings
        self._explicit_settings = settings is not None
        self._entry_points = entry_points
        self._observer_entry_points = observer_entry_points
        self._routes: dict[str, Route] | None = None
        self._route_errors: dict[str, str] = {}
        self._building_routes = False
        self._loaded = False
        self._strict_failure: PluginLoadError | None = None
        self._lock = threading.RLock()
        self._manager = pluggy.PluginManager(hooks.PROJECT_NAME)
        self._manager.add_hookspecs(hooks)
        #: What every call of this registry's providers runs with.
        self.runtime = Runtime(self._load_settings, self._manager)
        self._plugins = Loaded(self._manager, self.runtime, lambda: self.settings)
        self._providers = self._plugins.providers
        #: What model names mean: aliases, the default model, the servers' lists.
        self.catalog = Catalog(self._loaded_providers, self._named_routes,
                               lambda: self.settings, config,
                               default=lambda: self.default_model, not_found=self._not_found)

    def _load_settings(self) -> Settings:
        if self._settings is None:
            from ..settings import load_settings

            self._settings = load_settings()
            self._check_variables()
        return self._settings

    def _check_variables(self) -> None:
        """Warn of misspelled CHATPLUG_* variables, once both the environment's settings
        and the providers (whose names make variables) are loaded."""
        if self._explicit_settings or not self._loaded or self._settings is None:
            return
        from ..settings import warn_unknown_variables

        warn_unknown_variables(os.environ, [p.name for p in self._providers.values()])

    def __repr__(self) -> str:
        state = f"{len(self._providers)} providers" if self._loaded else "not loaded"
        return f"<chatplug.Registry {self.group} ({state})>"

    # -- configuration ---------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force, read from the environment and ``.env`` on first use.

        :raises ConfigurationError: a setting has an invalid value.
        """
        return self.runtime.settings

    @property
    def transport(self) -> Transport:
        """The HTTP transport (one pooled session) every call of this registry uses."""
        return self.runtime.transport

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for inspection)."""
        self._ensure_loaded()
        return self._manager

    # -- lookup ----------------------------------------------------------------------

    def get(self, name: str) -> Provider | Route | BoundModel:
        """What ``name`` names, ready to call: a provider (case-insensitive), a named route
        (the same :class:`Route` object each time: its state lives in it), or, for a
        model (``"gpt-4o-mini"``, ``"OpenAI/gpt-4o-mini"``, an alias), a
        :class:`BoundModel`: its provider or route bound to that model.  See
        :meth:`resolve` for how a name is looked up.

        :raises ProviderNotFoundError: naming the closest match, the installed
            providers, and the load error if that plugin failed to load.
        :raises AmbiguousModelError: several providers serve that bare model name.
        :raises ConfigurationError: the aliases or chatplug.toml are malformed.
        """
        if not isinstance(name, str) or not name.strip():
            raise ProviderNotFoundError(f"a provider or model name is required, not {name!r}.")
        target, model = self.resolve(name)
        return target if model is None else BoundModel(target, model)

    def provider(self, name: str) -> Provider:
        """The provider called ``name`` (case-insensitive); never a route.

        :raises ProviderNotFoundError: as :meth:`get`.
        """
        self._ensure_loaded()
        if not isinstance(name, str):
            raise ProviderNotFoundError(f"provider name must be a string, not {name!r}.")
        provider = self._providers.get(name.lower())
        if provider is not None:
            return provider
        raise self._not_found(name)

    def _not_found(self, name: str, models: list[str] | None = None) -> ProviderNotFoundError:
        return not_found(
            name,
            installed=[p.name for p in self.providers()]
            + [r.name for r in self._named_routes().values()],
            failed={k: v for k, v in self._plugins.errors.items()
                    if k not in self._plugins.failed_observers},
            disabled=self._plugins.controls.is_disabled(name),
            not_allowed=self._plugins.not_allowed,
            models=models,
        )

    def resolve(self, name: str | None) -> Target:
        """What a model field names, as ``(target, model)`` (``model`` ``None``: the
        target's default).  In order: a provider (``"OpenAI"``) or route name; an alias
        (``CHATPLUG_MODELS``, else chatplug.toml's ``[models]``); ``"Provider/model"``
        (split at the first ``/``, so ``OpenAI/meta-llama/Llama-3`` is the OpenAI
        provider with model ``meta-llama/Llama-3``; ``route/model`` gives the route's
        entries that name no model that one); a model some provider declares; a model
        the server of a configured provider lists (cached ``CHATPLUG_MODELS_TTL``
        seconds; asking blocks, at most a few seconds: use :meth:`aresolve` on an
        event loop).  ``None`` or ``""``: the default model.

        :raises ProviderNotFoundError: nothing of that name (the closest names, and the
            ``Provider/model`` form).
        :raises AmbiguousModelError: several providers serve that bare model name.
        :raises InvalidRequestError: no name and no default model.
        :raises ConfigurationError: the aliases or chatplug.toml are malformed.
        """
        return self.catalog.resolve(name)

    async def aresolve(self, name: str | None) -> Target:
        """:meth:`resolve` for an event loop: the servers' lists, when a name needs them
        and they are stale, are asked for on a worker thread.  Raises as :meth:`resolve`."""
        return await self.catalog.aresolve(name)

    @property
    def default_model(self) -> str | None:
        """The model used when none is named: ``CHATPLUG_DEFAULT_MODEL``, else
        ``default_model`` in chatplug.toml, else ``None``.

        :raises ConfigurationError: chatplug.toml is malformed.
        """
        if self._settings is None and not os.path.exists(".env"):
            # Only the environment could set it: no need to read the settings (and import
            # pydantic) before `chatplug chat` shows where its prompt goes.
            variable = os.environ.get("CHATPLUG_DEFAULT_MODEL", "").strip()
            return variable or self.catalog.config.default_model
        return self.catalog.default_model

    def route(
        self,
        entries: Sequence[str | tuple[str, str | None] | Entry],
        *,
        strategy: str = "ordered",
        cooldown: float = 30.0,
        allowed_fails: int = 1,
        fallback_on_client_errors: bool = False,
        name: str | None = None,
    ) -> Route:
        """A :class:`Route` over ``entries``: provider names, ``"Provider/model"`` or
        ``(provider, model)`` pairs.  See docs/routes.md for the semantics.

        :raises ProviderNotFoundError: an entry names no installed provider.
        :raises InvalidRequestError: a malformed entry or option.
        """
        return build_route(entries, self.provider, self.runtime, name=name, strategy=strategy,
                           cooldown=cooldown, allowed_fails=allowed_fails,
                           fallback_on_client_errors=fallback_on_client_errors)

    def routes(self) -> list[Route]:
        """The named routes of ``CHATPLUG_ROUTES``, sorted by name.

        :raises ConfigurationError: CHATPLUG_ROUTES is malformed.
        """
        self._ensure_loaded()
        return sorted(self._named_routes().values(), key=lambda r: r.name.lower())

    def _named_routes(self) -> dict[str, Route]:
        if self._routes is None:
            with self._lock:
                if self._routes is None:
                    if self._building_routes:
                        return {}  # an entry's error message asks while they are built
                    self._building_routes = True
                    try:
                        self._routes = self._load_routes()
                    finally:
                        self._building_routes = False
        return self._routes

    def _load_routes(self) -> dict[str, Route]:
        specs = [(spec, "CHATPLUG_ROUTES") for spec in parse_routes(self.settings.routes)]
        with contextlib.suppress(ConfigurationError):  # in errors; lookups raise it
            specs += alias_routes(*self.catalog.models())
        routes, errors = load_named_routes(specs, self._providers, self.route)
        self._route_errors = errors
        return routes

    def providers(self) -> list[Provider]:
        """Every loaded provider, sorted by name."""
        self._ensure_loaded()
        return sorted(self._providers.values(), key=lambda p: p.name.lower())

    def observers(self) -> list[Observer]:
        """Every loaded observer, sorted by name."""
        self._ensure_loaded()
        return self._plugins.observers.sorted()

    @property
    def errors(self) -> dict[str, str]:
        """``{entry-point name: one-line reason}`` for plugins (providers and observers)
        that failed to load, ``{"route:<name>": reason}`` for the routes of
        ``CHATPLUG_ROUTES`` that did not (their name is a provider's, an entry names no
        provider...), and ``{"CHATPLUG_ROUTES": reason}`` when that setting is malformed."""
        self._ensure_loaded()
        errors = dict(self._plugins.errors)
        try:
            _ = self.settings
        except ConfigurationError:
            return errors  # unreadable settings are reported by what reads them
        try:
            self._named_routes()
        except ConfigurationError as exc:
            errors["CHATPLUG_ROUTES"] = exc.message
        errors.update(self._route_errors)
        errors.update(self.catalog.errors())
        return errors

    @property
    def disabled(self) -> dict[str, str | None]:
        """``{entry-point name: distribution}`` of the plugins CHATPLUG_DISABLED_PROVIDERS
        kept from loading (their modules were never imported)."""
        self._ensure_loaded()
        return dict(self._plugins.disabled)

    @property
    def not_allowed(self) -> dict[str, str | None]:
        """``{entry-point name: distribution}`` of the third-party plugins skipped because
        CHATPLUG_PLUGINS does not name them."""
        self._ensure_loaded()
        return dict(self._plugins.not_allowed)

    # -- loading ---------------------------------------------------------------------

    def register(
        self,
        plugin: object,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> Provider:
        """Add a provider module or object directly, without an entry point.

        :raises PluginLoadError: the plugin is invalid, the name is taken, or the
            name is disabled by CHATPLUG_DISABLED_PROVIDERS.
        """
        return self._register_directly("provider", self._plugins.add_provider, plugin, name,
                                       distribution, version)

    def register_observer(
        self,
        plugin: object,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> Observer:
        """Add an observer module or object directly, without an entry point.

        :raises PluginLoadError: it implements no observer hook, a misspelled or
            provider hook, the name is taken, or it is disabled.
        """
        return self._register_directly(
            "observer", self._plugins.observers.add, plugin, name, distribution, version
        )

    def _register_directly(
        self,
        kind: str,
        add: Callable[[str, object, str | None, str | None], T],
        plugin: object,
        name: str | None,
        distribution: str | None,
        version: str | None,
    ) -> T:
        self._ensure_loaded()
        name = name or plugin_name(plugin)
        with self._lock:
            try:
                if self._plugins.controls.is_disabled(name):
                    raise _LoadFailure("disabled by CHATPLUG_DISABLED_PROVIDERS")
                added = add(name, plugin, distribution, version)
                # A new provider may be what a named route lacked, or share its name.
                self._routes = None
                self.catalog.forget()
                return added
            except _LoadFailure as exc:
                raise PluginLoadError(self._plugins.redacted(f"{kind} {name!r}: {exc}"),
                                      entry_point=name) from None

    def _loaded_providers(self) -> dict[str, Provider]:
        self._ensure_loaded()
        return self._providers

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._load_all()
        if self._plugins.errors and self._strict_failure is not None:
            raise self._strict_failure

    def _load_all(self) -> None:
        found = self._entry_points
        observers = self._observer_entry_points
        if found is None:
            found = tuple(entry_points(group=self.group))
            if observers is None:
                observers = tuple(entry_points(group=OBSERVER_GROUP))
        plugins = self._plugins
        if controls_may_be_set(self._explicit_settings):
            plugins.controls = PluginControls.from_settings(self.settings)
        plugins.load(found, observers or ())
        self._loaded = True
        self._check_variables()
        if plugins.errors and self.settings.strict_plugins:
            name, reason = next(iter(plugins.errors.items()))
            kind = "observer" if name in plugins.failed_observers else "provider"
            self._strict_failure = PluginLoadError(
                f"{kind} plugin {name!r} failed to load: {reason}. "
                "(CHATPLUG_STRICT_PLUGINS is on; unset it to skip broken plugins.)",
                entry_point=name,
            )

    def observer_hook(self) -> Any:
        """pluggy's hook relay if any observer hook is implemented, else ``None``."""
        self._ensure_loaded()
        return self.runtime.observers()

    def flush_observers(self, timeout: float = 5.0) -> bool:
        """Wait until observers heard every notification posted so far (calls never
        wait for their observers; see :mod:`chatplug.calls.notify`), at most ``timeout``
        seconds; whether they all were delivered.  At exit this happens by itself."""
        return self.runtime.notifications.flush(timeout)

    def close(self) -> None:
        """Close the pooled HTTP connections (the registry stays usable)."""
        self.runtime.close()
