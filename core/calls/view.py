"""What a stream, sync or async, tells of the call it reads: :class:`CallView`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .caller import Running
    from .completion import Completion

__all__ = ["CallView"]


class CallView:
    """What a sync or async stream tells of the call it reads (its subclasses set
    ``_call``)."""

    __slots__ = ()
    _call: Running

    @property
    def provider(self) -> str:
        """The provider serving this stream (a route's: the one that served, or last tried)."""
        return self._call.provider

    @property
    def model(self) -> str:
        """The model requested."""
        return self._call.model

    @property
    def text_length(self) -> int:
        """Characters of text received so far (counted even when the text is not kept)."""
        return self._call.builder.text_length

    @property
    def completion(self) -> Completion:
        """The :class:`Completion` so far; final once the stream ended normally."""
        return self._call.completion
