"""What running a call needs, handed to each provider: :class:`Runtime`.

The settings (read on first use, so listing providers never imports
pydantic), the registry's one HTTP transport, and the observer hooks.  The
registry owns one runtime; providers and routes receive it instead of
reaching back into the registry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..hooks import OBSERVER_HOOKS

if TYPE_CHECKING:
    import pluggy

    from ..configfile import Price
    from ..settings import Settings
    from ..transport.client import Transport
    from .notify import Notifications
    from .workers import WorkerPool

__all__ = ["Runtime"]


class Runtime:
    """Settings, transport and observers shared by every call of one registry.

    :param load_settings: reads the settings; called once, on first use.
    :param manager: the pluggy manager the observers are registered with.
    """

    def __init__(self, load_settings: Callable[[], Settings], manager: pluggy.PluginManager):
        self._load_settings = load_settings
        self._manager = manager
        self._settings: Settings | None = None
        self._transport: Transport | None = None
        self._async_pool: WorkerPool | None = None
        self._notifications: Notifications | None = None
        self._prices: dict[str, Price] | None = None
        self._lock = threading.RLock()

    @property
    def settings(self) -> Settings:
        """The settings in force.

        :raises ConfigurationError: a setting has an invalid value.
        """
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    self._settings = self._load_settings()
        return self._settings

    @property
    def transport(self) -> Transport:
        """The HTTP transport (one pooled session) every call uses."""
        if self._transport is None:
            from ..transport.client import Transport

            with self._lock:
                if self._transport is None:
                    self._transport = Transport.from_settings(self.settings)
        return self._transport

    @property
    def async_pool(self) -> WorkerPool:
        """The worker threads async calls run on (``CHATPLUG_ASYNC_WORKERS`` at most)."""
        if self._async_pool is None:
            from .workers import WorkerPool

            with self._lock:
                if self._async_pool is None:
                    self._async_pool = WorkerPool(self.settings.async_workers,
                                                  name="chatplug-async")
        return self._async_pool

    @property
    def notifications(self) -> Notifications:
        """The queue observers hear this runtime's calls through (its ``dropped`` counts
        what a full queue refused); see :mod:`chatplug.calls.notify`."""
        if self._notifications is None:
            from .notify import Notifications

            with self._lock:
                if self._notifications is None:
                    self._notifications = Notifications()
        return self._notifications

    @property
    def prices(self) -> dict[str, Price]:
        """USD per million tokens by model: chatplug.toml's ``[prices]`` (read once), for
        ``Completion.cost``; empty without any (or when the file is malformed: that is
        logged, and the calls go on unpriced)."""
        prices = self._prices
        if prices is None:
            from ..accounting.pricing import price_list
            from ..configfile import load_config
            from ..errors import ConfigurationError

            try:
                prices = price_list(load_config())
            except ConfigurationError as exc:
                logging.getLogger("chatplug").warning("completions are not priced: %s", exc)
                prices = {}
            self._prices = prices
        return prices

    def observers(self) -> Any:
        """pluggy's hook relay if any observer hook is implemented, else ``None``.

        Calls check this first, so that with no observers installed a completion
        pays nothing for the observer mechanism.
        """
        relay = self._manager.hook
        for name in OBSERVER_HOOKS:
            caller = getattr(relay, name, None)
            if caller is not None and caller.get_hookimpls():
                return relay
        return None

    def implementation(self, hook: str, plugin: object) -> pluggy.HookImpl | None:
        """``plugin``'s own implementation of ``hook`` (never a broadcast), or ``None``."""
        caller = getattr(self._manager.hook, hook, None)
        if caller is None:
            return None
        return next((impl for impl in caller.get_hookimpls() if impl.plugin is plugin), None)

    def close(self) -> None:
        """Close the pooled connections (the runtime stays usable)."""
        if self._transport is not None:
            self._transport.close()
