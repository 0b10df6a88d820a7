"""A request that came in on another wire, translated into chatplug's call.

The gateway serves Anthropic's Messages and OpenAI's Responses in front of every
provider.  Their translators (:mod:`.anthropic_gateway`, :mod:`.responses`) turn a
request into OpenAI-shaped ``messages`` and a :class:`TranslatedRequest` whose
options are :class:`Mapped`: each names the field it came from and the chatplug
parameters that could carry it, best first.  :meth:`TranslatedRequest.params_for`
keeps, per field, the first parameter the target provider declares, and names
every field that found none: the gateway reports those in ``x-chatplug-dropped``
instead of failing the request (agents send many vendor fields).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Mapped", "TranslatedRequest"]


@dataclass(frozen=True)
class Mapped:
    """One field of the incoming request: ``source`` (its name on that wire) and the
    chatplug parameters that may carry it, as ``(name, value)`` pairs, best first."""

    source: str
    options: tuple[tuple[str, Any], ...]


@dataclass
class TranslatedRequest:
    """What the gateway needs to run a request that came in on another wire."""

    model: str | None
    messages: list[dict[str, Any]]
    stream: bool
    mapped: list[Mapped] = field(default_factory=list)
    #: Fields of the incoming request with no equivalent anywhere (always dropped).
    dropped: list[str] = field(default_factory=list)
    #: Every field dropped for the target the request was run against
    #: (:meth:`params_for`'s second result, kept for the response's header).
    dropped_for_target: list[str] = field(default_factory=list)

    def add(self, source: str, *options: tuple[str, Any]) -> None:
        self.mapped.append(Mapped(source, options))

    def params_for(self, declared: Collection[str] | None) -> tuple[dict[str, Any], list[str]]:
        """The parameters to send to a target that declares ``declared`` (``None``: a
        target whose parameters are not known, such as a route: the first option of
        each field), and every field dropped on the way, in the request's order."""
        params: dict[str, Any] = {}
        dropped = list(self.dropped)
        for mapped in self.mapped:
            for name, value in mapped.options:
                if (declared is None or name in declared) and name not in params:
                    params[name] = value
                    break
            else:
                dropped.append(mapped.source)
        return params, dropped
