"""The registry: entry points of group ``chatplug.providers`` -> :class:`Provider` objects.

Loading is lazy (on the first ``get``/``providers``/``errors``), happens once,
and is tolerant: a plugin that fails to import, raises, lacks metadata,
misspells its hook or reuses a taken name is recorded in ``errors`` and logged,
and every other provider still works.  ``CHATPLUG_STRICT_PLUGINS=1`` turns such
a failure into :class:`PluginLoadError`.  chatplug's own entry points load
first, so a third-party package can never take over a built-in's name (and
with it that provider's key).
"""

from __future__ import annotations

import difflib
import logging
import threading
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from . import hooks
from .errors import PluginLoadError, ProviderNotFoundError
from .provider import Provider

if TYPE_CHECKING:
    from .http import Transport
    from .settings import Settings

__all__ = ["ENTRY_POINT_GROUP", "Registry"]

ENTRY_POINT_GROUP = "chatplug.providers"
OWN_DISTRIBUTION = "chatplug"

logger = logging.getLogger("chatplug.registry")


class _LoadFailure(Exception):
    """Why one plugin was rejected (becomes its line in ``Registry.errors``)."""


def _metadata(plugin: Any) -> tuple[str, list[str], bool, bool]:
    """Read and check the seed-shaped metadata attributes of a provider."""
    missing = [n for n in ("url", "model", "supports_stream", "needs_auth")
               if not hasattr(plugin, n)]
    if missing:
        raise _LoadFailure(
            f"missing metadata attribute(s) {', '.join(missing)} "
            "(a provider needs url: str, model: list[str], supports_stream: bool, "
            "needs_auth: bool)"
        )
    url = plugin.url
    models = plugin.model
    supports_stream = plugin.supports_stream
    needs_auth = plugin.needs_auth
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _LoadFailure(f"url must be an http(s) URL string, not {url!r}")
    if not isinstance(models, (list, tuple)) or not all(
        isinstance(m, str) and m for m in models
    ):
        raise _LoadFailure(f"model must be a list of model names, not {models!r}")
    for attribute, value in (("supports_stream", supports_stream), ("needs_auth", needs_auth)):
        if not isinstance(value, bool):
            raise _LoadFailure(f"{attribute} must be True or False, not {value!r}")
    return url, list(models), supports_stream, needs_auth


class Registry:
    """Discovers provider plugins and hands out :class:`Provider` objects.

    :param group: the entry-point group to read.
    :param settings: settings to use instead of reading the environment.
    :param entry_points: load these instead of scanning installed distributions
        (``None``); pass ``()`` for a registry filled only by :meth:`register`.
    """

    def __init__(
        self,
        *,
        group: str = ENTRY_POINT_GROUP,
        settings: Settings | None = None,
        entry_points: tuple[EntryPoint, ...] | list[EntryPoint] | None = None,
    ) -> None:
        self.group = group
        self._settings = settings
        self._entry_points = entry_points
        self._providers: dict[str, Provider] = {}
        self._errors: dict[str, str] = {}
        self._loaded = False
        self._strict_failure: PluginLoadError | None = None
        self._lock = threading.RLock()
        self._transport: Transport | None = None
        self._manager = pluggy.PluginManager(hooks.PROJECT_NAME)
        self._manager.add_hookspecs(hooks)

    def __repr__(self) -> str:
        state = f"{len(self._providers)} providers" if self._loaded else "not loaded"
        return f"<chatplug.Registry {self.group} ({state})>"

    # -- configuration ---------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force, read from the environment and ``.env`` on first use.

        :raises ConfigurationError: a setting has an invalid value.
        """
        if self._settings is None:
            from .settings import load_settings

            with self._lock:
                if self._settings is None:
                    self._settings = load_settings()
        return self._settings

    @property
    def transport(self) -> Transport:
        """The HTTP transport (one pooled session) every call of this registry uses."""
        if self._transport is None:
            from .http import Transport

            with self._lock:
                if self._transport is None:
                    settings = self.settings
                    self._transport = Transport.from_settings(settings)
        return self._transport

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for inspection)."""
        self._ensure_loaded()
        return self._manager

    # -- lookup ----------------------------------------------------------------------

    def get(self, name: str) -> Provider:
        """The provider called ``name`` (case-insensitive).

        :raises ProviderNotFoundError: naming the closest match, the installed
            providers, and the load error if that plugin failed to load.
        """
        self._ensure_loaded()
        if not isinstance(name, str):
            raise ProviderNotFoundError(f"provider name must be a string, not {name!r}.")
        provider = self._providers.get(name.lower())
        if provider is not None:
            return provider
        failed = {key.lower(): (key, reason) for key, reason in self._errors.items()}
        if name.lower() in failed:
            key, reason = failed[name.lower()]
            raise ProviderNotFoundError(
                f"provider {key!r} is installed but failed to load: {reason}. "
                "Run `chatplug providers` for details."
            )
        names = [p.name for p in self.providers()]
        close = difflib.get_close_matches(
            name.lower(), [n.lower() for n in names], n=1, cutoff=0.5
        )
        hint = ""
        if close:
            hint = f" Did you mean {next(n for n in names if n.lower() == close[0])!r}?"
        raise ProviderNotFoundError(
            f"no provider named {name!r}.{hint} Installed: {', '.join(names) or 'none'}. "
            "Install a provider package or check the spelling."
        )

    def providers(self) -> list[Provider]:
        """Every loaded provider, sorted by name."""
        self._ensure_loaded()
        return sorted(self._providers.values(), key=lambda p: p.name.lower())

    @property
    def errors(self) -> dict[str, str]:
        """``{entry-point name: one-line reason}`` for plugins that failed to load."""
        self._ensure_loaded()
        return dict(self._errors)

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

        :raises PluginLoadError: the plugin is invalid or the name is taken.
        """
        self._ensure_loaded()
        name = name or getattr(plugin, "__name__", type(plugin).__name__).rsplit(".", 1)[-1]
        with self._lock:
            try:
                return self._add(name, plugin, distribution, version)
            except _LoadFailure as exc:
                raise PluginLoadError(f"provider {name!r}: {exc}", entry_point=name) from None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._load_all()
        if self._errors and self._strict_failure is not None:
            raise self._strict_failure

    def _load_all(self) -> None:
        found = self._entry_points
        if found is None:
            found = tuple(entry_points(group=self.group))
        # chatplug's own first: a third party can never shadow a built-in name.
        ordered = sorted(found, key=lambda ep: _distribution(ep)[0] != OWN_DISTRIBUTION)
        for entry_point in ordered:
            self._load_one(entry_point)
        self._manager.check_pending()
        self._loaded = True
        if self._errors and self.settings.strict_plugins:
            name, reason = next(iter(self._errors.items()))
            self._strict_failure = PluginLoadError(
                f"provider plugin {name!r} failed to load: {reason}. "
                "(CHATPLUG_STRICT_PLUGINS is on; unset it to skip broken plugins.)",
                entry_point=name,
            )

    def _load_one(self, entry_point: EntryPoint) -> None:
        distribution, version = _distribution(entry_point)
        name = entry_point.name
        try:
            if name.lower() in self._providers:
                taken = self._providers[name.lower()]
                owner = taken.distribution or "another plugin"
                raise _LoadFailure(
                    f"the name {name!r} is already taken by {owner}"
                    f" ({taken.module_name}); {distribution or 'this plugin'} was not loaded. "
                    "Uninstall one of them or rename the entry point"
                )
            try:
                plugin = entry_point.load()
            except (Exception, SystemExit) as exc:
                raise _LoadFailure(
                    f"importing {entry_point.value} failed: {type(exc).__name__}: {exc}"
                ) from exc
            self._add(name, plugin, distribution, version)
        except _LoadFailure as exc:
            reason = " ".join(str(exc).split())
            self._errors[name] = reason
            logger.warning("provider plugin %r (%s) failed to load: %s",
                           name, distribution or "unknown distribution", reason)

    def _add(
        self, name: str, plugin: object, distribution: str | None, version: str | None
    ) -> Provider:
        if name.lower() in self._providers:
            raise _LoadFailure(f"the name {name!r} is already taken")
        url, models, supports_stream, needs_auth = _metadata(plugin)
        try:
            self._manager.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise _LoadFailure(" ".join(str(exc).split())) from None
        try:
            unknown = [c.name for c in self._manager.get_hookcallers(plugin) or []
                       if not c.has_spec()]
            if unknown:
                close = difflib.get_close_matches(unknown[0], ["create_completion"], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise _LoadFailure(f"@hookimpl {unknown[0]!r} is not a chatplug hook{hint}")
            impls = [i for i in self._manager.hook.create_completion.get_hookimpls()
                     if i.plugin is plugin]
            if not impls:
                raise _LoadFailure(
                    "no @hookimpl create_completion(model, messages, stream, ...) found"
                )
            try:
                provider = Provider(
                    name,
                    plugin,
                    impls[0].function,
                    registry=self,
                    url=url,
                    models=models,
                    supports_stream=supports_stream,
                    needs_auth=needs_auth,
                    distribution=distribution,
                    version=version,
                )
            except (ValueError, TypeError) as exc:
                raise _LoadFailure(str(exc)) from None
        except _LoadFailure:
            self._manager.unregister(plugin)
            raise
        self._providers[name.lower()] = provider
        return provider

    def observer_hook(self) -> Any:
        """pluggy's hook relay if any observer hook is implemented, else ``None``.

        Calls check this first, so that with no observers installed a
        completion pays nothing for the observer mechanism.
        """
        relay = self.plugin_manager.hook
        for name in hooks.OBSERVER_HOOKS:
            caller = getattr(relay, name, None)
            if caller is not None and caller.get_hookimpls():
                return relay
        return None

    def close(self) -> None:
        """Close the pooled HTTP connections (the registry stays usable)."""
        if self._transport is not None:
            self._transport.close()


def _distribution(entry_point: EntryPoint) -> tuple[str | None, str | None]:
    dist: Any = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.name, dist.version
    except Exception:
        return None, None
