"""A streamed reply: :class:`Stream`, two views of one reply.

Iterating a stream gives its text pieces the moment they arrive;
:meth:`Stream.events` gives everything the provider yielded, text and events,
in order; :attr:`Stream.completion` is the :class:`Completion` assembled so
far.  Both views consume the same reply.  Closing it (``close()``, leaving a
``with`` block) closes the HTTP response, from any thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError
from .view import CallView

if TYPE_CHECKING:
    from ..events import Event
    from .caller import Running as Call

__all__ = ["Stream"]

_BUSY = ("this stream is being read by another thread; read a stream from one thread "
         "at a time (close() may be called from any thread).")


class Stream(CallView, Iterator[str]):
    """The pieces of a streamed reply, yielded as they arrive on the wire.

    Closing it (``close()``, leaving a ``with`` block) closes the HTTP response;
    ``close()`` from another thread ends a read blocked on the network at once.
    Breaking out of a ``for`` loop over a stream kept in a variable leaves it
    open until it is closed or garbage-collected: use ``with``.

    :raises StreamInterruptedError: while iterating, when the reply was cut; its
        ``completion`` holds the reply so far.
    """

    __slots__ = ("_call", "_generator", "_whole")

    def __init__(self, call: Call, *, whole: bool = False) -> None:
        self._call = call
        #: The provider cannot stream: its whole reply arrives as one piece.
        self._whole = whole
        self._generator: Iterator[str | Event] | None = None

    def _items(self, *, text_only: bool) -> Iterator[str | Event]:
        if self._generator is None:
            self._call.text_only = text_only
            self._generator = _whole(self._call) if self._whole else self._call.events()
        elif not text_only:
            self._call.text_only = False  # events from now on reach events()
        return self._generator

    def __iter__(self) -> Iterator[str]:
        items = self._items(text_only=True)
        if getattr(items, "gi_running", False):
            raise InvalidRequestError(_BUSY, provider=self.provider, model=self.model)
        if not self._call.text_only:
            items = (item for item in items if isinstance(item, str))
        # Never the call's own generator: another thread reading it meanwhile would
        # give this loop a raw "generator already executing" ValueError.
        return _one_reader(items, self)  # type: ignore[arg-type]

    def __next__(self) -> str:
        items = self._items(text_only=True)
        try:
            while True:
                item = next(items)
                if type(item) is str:
                    return item
        except ValueError as exc:
            if "already executing" in str(exc):
                raise InvalidRequestError(_BUSY, provider=self.provider,
                                          model=self.model) from None
            raise

    def events(self) -> Iterator[str | Event]:
        """Everything the provider yielded, in order: text (``str``) and
        :mod:`chatplug.events` objects (``Meta``, ``Usage``, ``Finish``, ...)."""
        return self._items(text_only=False)

    def close(self) -> None:
        """Close the reply, from any thread; idempotent."""
        generator = self._items(text_only=True)
        close = getattr(generator, "close", None)
        if getattr(generator, "gi_running", False) or close is None:
            self._call.cancel()
            return
        try:
            close()
        except ValueError:
            self._call.cancel()  # another thread started reading in between

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<chatplug.Stream provider={self.provider!r} model={self.model!r}>"


def _one_reader(items: Iterator[str], stream: Stream) -> Iterator[str]:
    """``items``, with a second reader's clash as chatplug's error.  Leaving a loop over
    it does not close the stream (the wrapper is dropped, the call's generator is not)."""
    pull = items.__next__
    while True:
        try:
            item = pull()
        except StopIteration:
            return
        except ValueError as exc:
            if "already executing" in str(exc):
                raise InvalidRequestError(_BUSY, provider=stream.provider,
                                          model=stream.model) from None
            raise
        yield item


def _whole(call: Call) -> Iterator[str | Event]:
    """A provider without stream support: its whole reply as one piece, fetched lazily."""
    events = [item for item in call.events() if type(item) is not str]
    text = call.builder.text
    if text:
        yield text
    if not call.text_only:
        yield from events
