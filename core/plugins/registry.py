"""The registry: entry points of group ``chatplug.providers`` -> :class:`Provider` objects.

Loading is lazy (on the first ``get``/``providers``/``errors``), happens once,
and is tolerant: a plugin that fails to import, raises, lacks metadata,
misspells its hook or reuses a taken name is recorded in ``errors`` and logged,
and every other provider still works.  ``CHATPLUG_STRICT_PLUGINS=1`` turns such
a failure into :class:`PluginLoadError`.  chatplug's own entry points load
first, so a third-party package can never take over a built-in's name (and
with it that provider's key).

Observers (group ``chatplug.observers``, see :mod:`chatplug.contract`) load
after the providers, as tolerantly, into the same pluggy manager.  The plugin
controls (:mod:`chatplug.controls`) decide what may load: a disabled name is
blocked in pluggy and its module never imported; a third-party plugin missing
from a set allow-list is skipped.  Both are reported, neither is an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from .. import hooks
from ..calls.provider import Provider
from ..calls.runtime import Runtime
from ..errors import InvalidRequestError, PluginLoadError, ProviderNotFoundError
from ..naming import env_name, provider_slug
from ..routes.entries import Entry
from .contract import (
    OBSERVER_GROUP,
    Observer,
    add_observer,
    add_provider_hooks,
    distribution_of,
    pluggy_name,
    plugin_name,
    provider_metadata,
)
from .contract import Rejected as _LoadFailure
from .controls import PluginControls, controls_may_be_set
from .missing import not_found

T = TypeVar("T")

if TYPE_CHECKING:
    from ..routes.route import Route
    from ..settings import Settings
    from ..transport.client import Transport

__all__ = ["ENTRY_POINT_GROUP", "OBSERVER_GROUP", "Registry"]

ENTRY_POINT_GROUP = "chatplug.providers"
OWN_DISTRIBUTION = "chatplug"

logger = logging.getLogger("chatplug.registry")


class Registry:
    """Discovers provider plugins and hands out :class:`Provider` objects.

    :param group: the entry-point group to read.
    :param settings: settings to use instead of reading the environment.
    :param entry_points: load these instead of scanning installed distributions
        (``None``); pass ``()`` for a registry filled only by :meth:`register`.
    :param observer_entry_points: observers to load; ``None`` scans the installed
        ``chatplug.observers`` entry points when ``entry_points`` is ``None`` too,
        and loads none otherwise (an explicit registry stays explicit).
    """

    def __init__(
        self,
        *,
        group: str = ENTRY_POINT_GROUP,
        settings: Settings | None = None,
        entry_points: tuple[EntryPoint, ...] | list[EntryPoint] | None = None,
        observer_entry_points: tuple[EntryPoint, ...] | list[EntryPoint] | None = None,
    ) -> None:
        self.group = group
        self._settings = settings
        self._explicit_settings = settings is not None
        self._entry_points = entry_points
        self._observer_entry_points = observer_entry_points
        self._providers: dict[str, Provider] = {}
        self._routes: dict[str, Route] | None = None
        self._observers: dict[str, Observer] = {}
        self._errors: dict[str, str] = {}
        self._failed_observers: set[str] = set()
        self._disabled: dict[str, str | None] = {}
        self._not_allowed: dict[str, str | None] = {}
        self._controls = PluginControls()
        self._loaded = False
        self._strict_failure: PluginLoadError | None = None
        self._lock = threading.RLock()
        self._manager = pluggy.PluginManager(hooks.PROJECT_NAME)
        self._manager.add_hookspecs(hooks)
        #: What every call of this registry's providers runs with.
        self.runtime = Runtime(self._load_settings, self._manager)

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

    def get(self, name: str) -> Provider | Route:
        """The provider (case-insensitive) or the named route called ``name``; a route is
        the same :class:`Route` object each time (its state lives in it).

        :raises ProviderNotFoundError: naming the closest match, the installed
            providers, and the load error if that plugin failed to load.
        """
        self._ensure_loaded()
        if not isinstance(name, str):
            raise ProviderNotFoundError(f"provider name must be a string, not {name!r}.")
        provider = self._providers.get(name.lower())
        if provider is not None:
            return provider
        # Routes come from the settings; a provider lookup never reads them (no pydantic).
        route = self._named_routes().get(name.lower())
        if route is not None:
            return route
        return self.provider(name)

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
        raise not_found(
            name,
            installed=[p.name for p in self.providers()]
            + [r.name for r in self._named_routes().values()],
            failed={k: v for k, v in self._errors.items() if k not in self._failed_observers},
            disabled=self._controls.is_disabled(name),
            not_allowed=self._not_allowed,
        )

    def resolve(self, name: str) -> tuple[Provider | Route, str | None]:
        """What a model field names: ``"Provider"`` (its default model), a route's name,
        or ``"Provider/model"`` (split at the first ``/``, so ``OpenAI/meta-llama/Llama-3``
        is the OpenAI provider with model ``meta-llama/Llama-3``; ``route/model`` gives
        the route's entries that name no model that one).

        Returns the target and the model it names (``None``: the target's default).

        :raises ProviderNotFoundError: no provider or route of that name.
        """
        if not isinstance(name, str) or not name.strip():
            raise ProviderNotFoundError(f"a provider name is required, not {name!r}.")
        self._ensure_loaded()
        if name.lower() in self._providers:
            return self._providers[name.lower()], None
        head, slash, model = name.partition("/")
        if slash and model and (head.lower() in self._providers
                                or head.lower() in self._named_routes()):
            return self.get(head), model
        return self.get(name), None

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
        from ..routes import Route, parse_entry

        parsed = [parse_entry(entry) for entry in entries]
        providers = [self.provider(entry.provider) for entry in parsed]
        # Entries name providers as their users spell them; keep the provider's own name.
        parsed = [Entry(p.name, e.model) for e, p in zip(parsed, providers, strict=True)]
        label = name or "+".join(str(entry) for entry in parsed)
        return Route(label, parsed, providers, self.runtime, strategy=strategy,
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
                    self._routes = self._load_routes()
        return self._routes

    def _load_routes(self) -> dict[str, Route]:
        from ..routes import parse_routes

        routes: dict[str, Route] = {}
        for spec in parse_routes(self.settings.routes):
            key = f"route:{spec.name}"
            if spec.name.lower() in self._providers:
                self._errors[key] = (f"the route name {spec.name!r} is a provider's name; "
                                     "rename the route in CHATPLUG_ROUTES")
                continue
            try:
                routes[spec.name.lower()] = self.route(spec.entries, name=spec.name,
                                                       **spec.options)
            except (ProviderNotFoundError, InvalidRequestError) as exc:
                self._errors[key] = f"CHATPLUG_ROUTES: {exc.message}"
            else:
                continue
            logger.warning("route %r was not loaded: %s", spec.name, self._errors[key])
        return routes

    def providers(self) -> list[Provider]:
        """Every loaded provider, sorted by name."""
        self._ensure_loaded()
        return sorted(self._providers.values(), key=lambda p: p.name.lower())

    def observers(self) -> list[Observer]:
        """Every loaded observer, sorted by name."""
        self._ensure_loaded()
        return sorted(self._observers.values(), key=lambda o: o.name.lower())

    @property
    def errors(self) -> dict[str, str]:
        """``{entry-point name: one-line reason}`` for plugins (providers and observers)
        that failed to load."""
        self._ensure_loaded()
        return dict(self._errors)

    @property
    def disabled(self) -> dict[str, str | None]:
        """``{entry-point name: distribution}`` of the plugins CHATPLUG_DISABLED_PROVIDERS
        kept from loading (their modules were never imported)."""
        self._ensure_loaded()
        return dict(self._disabled)

    @property
    def not_allowed(self) -> dict[str, str | None]:
        """``{entry-point name: distribution}`` of the third-party plugins skipped because
        CHATPLUG_PLUGINS does not name them."""
        self._ensure_loaded()
        return dict(self._not_allowed)

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
        return self._register_directly("provider", self._add, plugin, name, distribution, version)

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
            "observer", self._add_observer, plugin, name, distribution, version
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
                if self._controls.is_disabled(name):
                    raise _LoadFailure("disabled by CHATPLUG_DISABLED_PROVIDERS")
                return add(name, plugin, distribution, version)
            except _LoadFailure as exc:
                raise PluginLoadError(self._redacted(f"{kind} {name!r}: {exc}"),
                                      entry_point=name) from None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._load_all()
        if self._errors and self._strict_failure is not None:
            raise self._strict_failure

    def _load_all(self) -> None:
        found = self._entry_points
        observers = self._observer_entry_points
        if found is None:
            found = tuple(entry_points(group=self.group))
            if observers is None:
                observers = tuple(entry_points(group=OBSERVER_GROUP))
        if controls_may_be_set(self._explicit_settings):
            self._controls = PluginControls.from_settings(self.settings)
        # chatplug's own first: a third party can never shadow a built-in name.
        ordered = sorted(found, key=lambda ep: distribution_of(ep)[0] != OWN_DISTRIBUTION)
        for entry_point in ordered:
            if self._admitted(entry_point, blocked_as=entry_point.name):
                self._load_one(entry_point)
        for entry_point in observers or ():
            if self._admitted(entry_point, blocked_as=pluggy_name(entry_point.name)):
                self._load_one(entry_point, observer=True)
        self._manager.check_pending()
        self._loaded = True
        self._check_variables()
        if self._errors and self.settings.strict_plugins:
            name, reason = next(iter(self._errors.items()))
            kind = "observer" if name in self._failed_observers else "provider"
            self._strict_failure = PluginLoadError(
                f"{kind} plugin {name!r} failed to load: {reason}. "
                "(CHATPLUG_STRICT_PLUGINS is on; unset it to skip broken plugins.)",
                entry_point=name,
            )

    def _admitted(self, entry_point: EntryPoint, *, blocked_as: str) -> bool:
        """Apply the plugin controls; a refused entry point is recorded, never imported."""
        name = entry_point.name
        distribution = distribution_of(entry_point)[0]
        if self._controls.is_disabled(name):
            # Blocked in pluggy too: nothing can register under this name later.
            self._manager.set_blocked(blocked_as)
            self._disabled[name] = distribution
            return False
        if not self._controls.is_allowed(name, distribution,
                                         builtin=distribution == OWN_DISTRIBUTION):
            self._not_allowed[name] = distribution
            return False
        return True

    def _add_observer(
        self, name: str, plugin: object, distribution: str | None, version: str | None
    ) -> Observer:
        taken = self._observers.get(name.lower())
        if taken is not None:
            raise _LoadFailure(
                f"the observer name {name!r} is already taken by "
                f"{taken.distribution or 'another plugin'}"
            )
        observer = add_observer(self._manager, name, plugin, distribution, version)
        self._observers[name.lower()] = observer
        return observer

    def _load_one(self, entry_point: EntryPoint, *, observer: bool = False) -> None:
        distribution, version = distribution_of(entry_point)
        name = entry_point.name
        try:
            taken = None if observer else self._same_settings_name(name)
            if taken is not None:
                raise _LoadFailure(
                    f"the name {name!r} is already taken by "
                    f"{taken.distribution or 'another plugin'} ({taken.module_name}"
                    f"{'' if taken.name.lower() == name.lower() else ' as ' + repr(taken.name)}"
                    f"); {distribution or 'this plugin'} was not loaded. "
                    "Uninstall one of them or rename the entry point"
                )
            try:
                plugin = entry_point.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit, or a plugin's own BaseException
                raise _LoadFailure(
                    f"importing {entry_point.value} failed: {type(exc).__name__}: {exc}"
                ) from None
            add = self._add_observer if observer else self._add
            try:
                add(name, plugin, distribution, version)
            except (_LoadFailure, KeyboardInterrupt):
                raise
            except BaseException as exc:  # a plugin's bug must never stop the others
                raise _LoadFailure(f"loading it failed: {type(exc).__name__}: {exc}") from None
        except _LoadFailure as exc:
            reason = self._redacted(("observer: " if observer else "")
                                    + " ".join(str(exc).split()))
            self._errors[name] = reason
            if observer:
                self._failed_observers.add(name)
            logger.warning("%s plugin %r (%s) failed to load: %s",
                           "observer" if observer else "provider", name,
                           distribution or "unknown distribution", reason)

    def _redacted(self, text: str) -> str:
        """``text`` (a load error) without any configured key: a plugin's exception may
        quote one, and load errors are logged, listed and printed."""
        from ..transport.redaction import install_log_redaction, redact

        install_log_redaction()
        keys = {value for name, value in os.environ.items()
                if name.upper().endswith("_API_KEY") and value.strip()}
        with contextlib.suppress(Exception):  # unreadable settings: the environment's go
            keys.update(secret.get_secret_value().strip()
                        for secret in self.settings.provider_api_keys.values())
        for key in sorted(keys, key=len, reverse=True):
            text = redact(text, key)
        return redact(text)

    def _add(
        self, name: str, plugin: object, distribution: str | None, version: str | None
    ) -> Provider:
        taken = self._same_settings_name(name)
        if taken is not None:
            raise _LoadFailure(
                f"the name {name!r} is already taken by {taken.name!r} (both would read "
                f"{env_name(name, 'API_KEY')})"
            )
        metadata = provider_metadata(plugin)
        function = add_provider_hooks(self._manager, name, plugin)
        try:
            provider = Provider(
                name,
                plugin,
                function,
                runtime=self.runtime,
                url=metadata.url,
                models=metadata.models,
                supports_stream=metadata.supports_stream,
                needs_auth=metadata.needs_auth,
                supports_tools=metadata.supports_tools,
                supports_vision=metadata.supports_vision,
                native_async=metadata.native_async,
                distribution=distribution,
                version=version,
            )
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            self._manager.unregister(plugin)
            message = str(exc) if isinstance(exc, (ValueError, TypeError)) else (
                f"{type(exc).__name__}: {exc}")
            raise _LoadFailure(message) from None
        self._providers[name.lower()] = provider
        return provider

    def _same_settings_name(self, name: str) -> Provider | None:
        """The loaded provider whose settings names (CHATPLUG_<NAME>_*) ``name`` shares."""
        slug = provider_slug(name)
        return next((p for p in self._providers.values() if provider_slug(p.name) == slug),
                    None)

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
