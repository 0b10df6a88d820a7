"""Virtual keys wired into the gateway: :class:`VirtualKeys` (docs/keys.md).

What :func:`~chatplug.server.create_app` installs with ``settings.auth``: the keys in
memory (:mod:`.keycache`), the accountant counting their limits (:mod:`.keyguard`), with
Redis the routes' cooldowns shared too (:mod:`.cooldowns`), and the admin API's routes
(:mod:`.admin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

from ..accounting.shared import SharedLimits
from .admin import create_key, list_keys, revoke_key
from .cooldowns import SharedCooldowns
from .keycache import KeyCache
from .keyguard import KeyLimits

if TYPE_CHECKING:
    from .app import Gateway

__all__ = ["VirtualKeys"]


class VirtualKeys:
    """The virtual keys of one gateway; :meth:`start` and :meth:`stop` in its lifespan."""

    def __init__(self, gateway: Gateway) -> None:
        """Install on ``gateway``: ``gateway.keys``, ``gateway.key_limits`` (the first
        accountant).

        :raises ConfigurationError: the admin key is too short, Redis is named without
            redis-py, or the config file is malformed.
        """
        settings = gateway.settings
        admin = settings.admin()  # a short admin key fails at start-up
        cache = gateway.keys = KeyCache(settings.database, settings.keys_refresh,
                                        required=admin is not None)
        limits = gateway.key_limits = KeyLimits.for_settings(settings)
        gateway.accountants.insert(0, limits)
        cache.loaded = lambda loaded: limits.seed(loaded, cache)
        self.cache = cache
        self.limits = limits
        self.cooldowns = (SharedCooldowns(gateway.registry, limits.limits)
                          if isinstance(limits.limits, SharedLimits) else None)
        self.routes = [Route("/admin/keys", list_keys, methods=["GET"]),
                       Route("/admin/keys", create_key, methods=["POST"]),
                       Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"])]

    async def start(self) -> None:
        await self.cache.start()
        if self.cooldowns is not None:
            self.cooldowns.start()

    async def stop(self) -> None:
        if self.cooldowns is not None:
            await self.cooldowns.stop()
        await self.limits.close()
        await self.cache.stop()
