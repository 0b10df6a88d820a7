"""The models providers' servers list (the ``list_models`` hook), cached for
``CHATPLUG_MODELS_TTL`` seconds (default 300).

Only providers that can list and that the user configured (a key, or a URL of
their own) are asked: nobody's public service is queried because a name was
mistyped.  Stale lists are asked for again all at once, each provider once at
a time (concurrent lookups wait for the one request in flight).  A failure is
logged and remembered as an empty list for at most 30 s, so a server that is
down is not asked on every request.  :meth:`ModelLists.alisted` never blocks an
event loop: fresh lists are returned as they are, stale ones are fetched on a
worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..errors import ChatplugError

if TYPE_CHECKING:
    from ..calls.provider import Provider

__all__ = ["FAILURE_TTL", "ModelLists", "configured"]

logger = logging.getLogger("chatplug.registry")

#: Seconds a failed listing is remembered at most (less when the TTL is shorter).
FAILURE_TTL = 30.0


def configured(provider: Provider) -> bool:
    """Whether ``provider``'s server may be asked for its models: it lists them, and
    the user gave it a key or a URL."""
    return provider.lists_models and (provider.api_key_configured
                                      or provider.url != provider.default_url)


def _accepted(provider: Provider, names: Iterable[str]) -> list[str]:
    """The listed names a call can use: a provider that declares models takes only those."""
    return [name for name in names if not provider.models or name in provider.models]


class ModelLists:
    """``{provider name: models its server lists}`` of the configured providers, cached.

    :param providers: the providers to consider, called on each lookup.
    :param ttl: seconds a list stays fresh, called on each lookup (``0``: never cached).
    """

    def __init__(self, providers: Callable[[], list[Provider]], ttl: Callable[[], float],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._providers = providers
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def clear(self) -> None:
        """Forget every list (the next lookup asks the servers again)."""
        with self._guard:
            self._cache.clear()

    def _fresh(self, provider: Provider) -> list[str] | None:
        cached = self._cache.get(provider.name)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        return None

    def _stale(self) -> list[Provider]:
        return [p for p in self._providers() if configured(p) and self._fresh(p) is None]

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _refresh(self, provider: Provider) -> None:
        with self._lock(provider.name):
            if self._fresh(provider) is not None:
                return  # another lookup asked while this one waited
            ttl = self._ttl()
            try:
                names = _accepted(provider, provider.list_models())
            except Exception as exc:  # a plugin's own failure is remembered the same way
                reason = exc.reason if isinstance(exc, ChatplugError) else type(exc).__name__
                logger.warning("could not list %s's models (%s); only its declared models "
                               "and Provider/model names resolve for now",
                               provider.name, reason)
                names, ttl = [], min(ttl, FAILURE_TTL)
            if ttl > 0:
                self._cache[provider.name] = (self._clock() + ttl, names)
            else:
                self._cache[provider.name] = (float("-inf"), names)

    def listed(self) -> dict[str, list[str]]:
        """The lists of the configured providers, asking (in parallel) for stale ones.

        Never raises for a server that fails: its list is empty (and logged).
        """
        stale = self._stale()
        if len(stale) == 1:
            self._refresh(stale[0])
        elif stale:
            from concurrent.futures import ThreadPoolExecutor  # imported when first needed

            with ThreadPoolExecutor(max_workers=min(8, len(stale)),
                                    thread_name_prefix="chatplug-model-lists") as pool:
                list(pool.map(self._refresh, stale))
        return {p.name: self._cache[p.name][1] for p in self._providers()
                if configured(p) and p.name in self._cache}

    async def alisted(self) -> dict[str, list[str]]:
        """:meth:`listed` for an event loop: stale lists are fetched on a worker thread."""
        if self._stale():
            import asyncio

            return await asyncio.to_thread(self.listed)
        return {p.name: self._cache[p.name][1] for p in self._providers()
                if configured(p) and p.name in self._cache}
