"""Loading plugins from entry points, tolerantly: :class:`Loaded`.

Providers (group ``chatplug.providers``) load first, chatplug's own before any
third party's, so a third-party package can never take over a built-in's name
(and with it that provider's key); observers (``chatplug.observers``) after
them.  A plugin that fails to import, raises, lacks metadata, misspells its
hook or reuses a taken name is recorded in :attr:`Loaded.errors` (one line,
keys redacted) and logged, and every other plugin still loads.  The plugin
controls decide what may load: a disabled name is blocked in pluggy and its
module never imported; a third-party plugin missing from a set allow-list is
skipped.  Both are recorded, neither is an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING

import pluggy

from ..calls.provider import Provider
from ..naming import env_name, provider_slug
from .contract import Rejected, add_provider_hooks, distribution_of, pluggy_name, provider_metadata
from .controls import PluginControls
from .observers import Observers

if TYPE_CHECKING:
    from ..calls.runtime import Runtime
    from ..settings import Settings

__all__ = ["OWN_DISTRIBUTION", "Loaded"]

OWN_DISTRIBUTION = "chatplug"

logger = logging.getLogger("chatplug.registry")


class Loaded:
    """The plugins one registry loaded, and what it could not or would not load.

    :param manager: the pluggy manager every plugin is registered with.
    :param runtime: what the providers' calls run with.
    :param settings: reads the settings (for the keys to redact from load errors).
    """

    def __init__(self, manager: pluggy.PluginManager, runtime: Runtime,
                 settings: Callable[[], Settings]) -> None:
        self.manager = manager
        self.runtime = runtime
        self._settings = settings
        self.providers: dict[str, Provider] = {}
        self.observers = Observers(manager)
        #: ``{entry-point name: one-line reason}`` of plugins that failed to load.
        self.errors: dict[str, str] = {}
        #: The entry-point names in :attr:`errors` that are observers.
        self.failed_observers: set[str] = set()
        self.disabled: dict[str, str | None] = {}
        self.not_allowed: dict[str, str | None] = {}
        self.controls = PluginControls()

    def load(self, providers: Iterable[EntryPoint], observers: Iterable[EntryPoint]) -> None:
        """Load every admitted entry point: providers (chatplug's own first), then observers."""
        ordered = sorted(providers, key=lambda ep: distribution_of(ep)[0] != OWN_DISTRIBUTION)
        for entry_point in ordered:
            if self._admitted(entry_point, blocked_as=entry_point.name):
                self._load_one(entry_point)
        for entry_point in observers:
            if self._admitted(entry_point, blocked_as=pluggy_name(entry_point.name)):
                self._load_one(entry_point, observer=True)
        self.manager.check_pending()

    def _admitted(self, entry_point: EntryPoint, *, blocked_as: str) -> bool:
        """Apply the plugin controls; a refused entry point is recorded, never imported."""
        name = entry_point.name
        distribution = distribution_of(entry_point)[0]
        if self.controls.is_disabled(name):
            # Blocked in pluggy too: nothing can register under this name later.
            self.manager.set_blocked(blocked_as)
            self.disabled[name] = distribution
            return False
        if not self.controls.is_allowed(name, distribution,
                                        builtin=distribution == OWN_DISTRIBUTION):
            self.not_allowed[name] = distribution
            return False
        return True

    def _load_one(self, entry_point: EntryPoint, *, observer: bool = False) -> None:
        distribution, version = distribution_of(entry_point)
        name = entry_point.name
        try:
            taken = None if observer else self.same_settings_name(name)
            if taken is not None:
                raise Rejected(
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
                raise Rejected(
                    f"importing {entry_point.value} failed: {type(exc).__name__}: {exc}"
                ) from None
            try:
                if observer:
                    self.observers.add(name, plugin, distribution, version)
                else:
                    self.add_provider(name, plugin, distribution, version)
            except (Rejected, KeyboardInterrupt):
                raise
            except BaseException as exc:  # a plugin's bug must never stop the others
                raise Rejected(f"loading it failed: {type(exc).__name__}: {exc}") from None
        except Rejected as exc:
            reason = self.redacted(("observer: " if observer else "")
                                   + " ".join(str(exc).split()))
            self.errors[name] = reason
            if observer:
                self.failed_observers.add(name)
            logger.warning("%s plugin %r (%s) failed to load: %s",
                           "observer" if observer else "provider", name,
                           distribution or "unknown distribution", reason)

    def add_provider(self, name: str, plugin: object, distribution: str | None,
                     version: str | None) -> Provider:
        """Check and register ``plugin`` as the provider ``name``.

        :raises Rejected: the name is taken, the metadata or the hooks are wrong, or
            building the provider failed.
        """
        taken = self.same_settings_name(name)
        if taken is not None:
            raise Rejected(
                f"the name {name!r} is already taken by {taken.name!r} (both would read "
                f"{env_name(name, 'API_KEY')})"
            )
        metadata = provider_metadata(plugin)
        function = add_provider_hooks(self.manager, name, plugin)
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
            self.manager.unregister(plugin)
            message = str(exc) if isinstance(exc, (ValueError, TypeError)) else (
                f"{type(exc).__name__}: {exc}")
            raise Rejected(message) from None
        self.providers[name.lower()] = provider
        return provider

    def same_settings_name(self, name: str) -> Provider | None:
        """The loaded provider whose settings names (CHATPLUG_<NAME>_*) ``name`` shares."""
        slug = provider_slug(name)
        return next((p for p in self.providers.values() if provider_slug(p.name) == slug),
                    None)

    def redacted(self, text: str) -> str:
        """``text`` (a load error) without any configured key: a plugin's exception may
        quote one, and load errors are logged, listed and printed."""
        from ..transport.redaction import install_log_redaction, redact

        install_log_redaction()
        keys = {value for name, value in os.environ.items()
                if name.upper().endswith("_API_KEY") and value.strip()}
        with contextlib.suppress(Exception):  # unreadable settings: the environment's go
            keys.update(secret.get_secret_value().strip()
                        for secret in self._settings().provider_api_keys.values())
        for key in sorted(keys, key=len, reverse=True):
            text = redact(text, key)
        return redact(text)
