"""A caller bound to one model: what ``registry.get("gpt-4o-mini")`` or
``registry.get("OpenAI/gpt-4o-mini")`` returns.

It is the provider (or route) itself with the model filled in: ``prepare`` and
``start`` are the target's, so the call takes the one path every call takes.
A model given to the call still wins (``create(messages, model="gpt-4.1")``).
Everything else (``parameters``, ``parse_options``, ``url``...) is the target's.
"""

from __future__ import annotations

from typing import Any

from .caller import Caller, Messages, Prepared, Running

__all__ = ["BoundModel"]


class BoundModel(Caller):
    """``target`` called with ``model`` unless the call names another.

    :ivar name: the target's name (a provider's or a route's).
    :ivar model: the model it is bound to.
    :ivar target: the provider or route.
    """

    def __init__(self, target: Caller, model: str) -> None:
        self.target = target
        self.model = model
        self.name = target.name

    def __repr__(self) -> str:
        return f"<chatplug.BoundModel {self.name}/{self.model}>"

    def __getattr__(self, attribute: str) -> Any:
        # Only reached for what this class does not define: the target's metadata.
        if attribute == "target":  # not set yet (unpickling): no recursion
            raise AttributeError(attribute)
        return getattr(self.target, attribute)

    def prepare(self, messages: Messages, model: str | None = None, stream: bool = False,
                **options: Any) -> Prepared:
        """The target's :meth:`~Caller.prepare` with this model unless ``model`` is given.

        :raises InvalidRequestError: as the target's (``ModelNotSupportedError``...).
        """
        return self.target.prepare(messages, model or self.model, stream, **options)

    def start(self, prepared: Any, *, buffered: bool = False) -> Running:
        return self.target.start(prepared, buffered=buffered)
