"""The observers one registry loaded: :class:`Observers`.

An observer (group ``chatplug.observers``, see :mod:`chatplug.plugins.contract`)
is registered with the registry's pluggy manager under ``observer:<name>``, so
it never collides with a provider of the same name.  Calls post what observers
hear to a queue and never wait for them (:mod:`chatplug.calls.notify`).
"""

from __future__ import annotations

import pluggy

from .contract import Observer, Rejected, add_observer

__all__ = ["Observers"]


class Observers:
    """The loaded observers by name (case-insensitive)."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self._manager = manager
        self._by_name: dict[str, Observer] = {}

    def add(self, name: str, plugin: object, distribution: str | None,
            version: str | None) -> Observer:
        """Register ``plugin`` as the observer ``name``.

        :raises Rejected: the name is taken, or the plugin is no observer (see
            :func:`~chatplug.plugins.contract.add_observer`).
        """
        taken = self._by_name.get(name.lower())
        if taken is not None:
            raise Rejected(
                f"the observer name {name!r} is already taken by "
                f"{taken.distribution or 'another plugin'}"
            )
        observer = add_observer(self._manager, name, plugin, distribution, version)
        self._by_name[name.lower()] = observer
        return observer

    def sorted(self) -> list[Observer]:
        """Every loaded observer, sorted by name."""
        return sorted(self._by_name.values(), key=lambda o: o.name.lower())
