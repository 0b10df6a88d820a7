"""Running one batch request: :func:`execute` -> :class:`Outcome`, cancellable from outside.

A provider's call is prepared and started by hand (``prepare`` then
``start(buffered=True)``, what ``Provider.complete`` does) so that the
:class:`Slot` holding it can cancel it from another thread: Ctrl-C ends a
request in flight at once instead of waiting for its reply.  A route (or any
other target with the provider caller API) runs through ``complete()``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from ..calls.provider import Provider
from ..errors import ChatplugError, ProviderResponseError
from ..transport.redaction import redact

if TYPE_CHECKING:
    from ..calls.completion import Completion
    from ..calls.run import Call
    from .inputs import Request

__all__ = ["Outcome", "Slot", "error_object", "execute", "new_request_id"]


def error_object(error: ChatplugError) -> dict[str, str]:
    """``{"code", "message"}`` of a failure, as batch results carry it (never a key)."""
    return {"code": error.code, "message": redact(str(error))}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one request: a completion, or an error object ``{"code", "message"}``
    (with ``"line"`` for an input line that has no usable ``custom_id``, which is ``None``)."""

    custom_id: str | None
    request_id: str
    completion: Completion | None = None
    error: dict[str, Any] | None = None
    provider: str | None = None

    @property
    def total_tokens(self) -> int:
        usage = self.completion.usage if self.completion is not None else None
        if usage is None:
            return 0
        if usage.total_tokens is not None:
            return usage.total_tokens
        return (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)


class Slot:
    """Where one worker keeps its call in flight, so that another thread can cancel it."""

    __slots__ = ("_call", "_cancelled", "_lock")

    def __init__(self) -> None:
        self._call: Call | None = None
        self._cancelled = False
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def hold(self, call: Call) -> bool:
        """Keep ``call`` here; False (and ``call`` cancelled) if the slot already was."""
        with self._lock:
            if self._cancelled:
                call.cancel()
                return False
            self._call = call
            return True

    def release(self) -> None:
        with self._lock:
            self._call = None

    def cancel(self) -> None:
        """Cancel the call in flight, and every later one this slot is asked to hold."""
        with self._lock:
            self._cancelled = True
            call = self._call
        if call is not None:
            call.cancel()


def new_request_id() -> str:
    """An id for a request that has none from a call (a route's, an invalid line's)."""
    return os.urandom(6).hex()


@overload
def execute(request: Request, slot: None = None) -> Outcome: ...


@overload
def execute(request: Request, slot: Slot) -> Outcome | None: ...


def execute(request: Request, slot: Slot | None = None) -> Outcome | None:
    """Send ``request`` and wait for its whole reply; ``None`` if ``slot`` cancelled it.

    Never raises for a failed request: its :class:`Outcome` carries the error
    (validation, HTTP, timeout... or a bug in a plugin, reported as one).
    """
    target = request.target
    request_id = new_request_id()
    try:
        if isinstance(target, Provider):
            prepared = target.prepare(request.messages, request.model, **request.params)
            call = target.start(prepared, buffered=True)
            call.text_only = True
            request_id = call.request_id
            if slot is not None and not slot.hold(call):
                return None
            try:
                for _ in call.events():
                    pass
            finally:
                if slot is not None:
                    slot.release()
            if call.cancelled:
                return None
            completion: Completion = call.completion
        else:
            arguments: dict[str, Any] = dict(request.params)
            if request.model is not None:
                arguments["model"] = request.model
            completion = target.complete(request.messages, **arguments)
    except ChatplugError as exc:
        if slot is not None and slot.cancelled:
            return None
        return Outcome(request.custom_id, request_id, error=error_object(exc),
                       provider=exc.provider or request.target_name)
    except Exception as exc:  # a route's or plugin's bug must not stop the batch
        error = ProviderResponseError(
            f"the request failed with {type(exc).__name__}: {redact(str(exc))}. This is a "
            "bug in the provider or route; please report it.",
            provider=request.target_name,
        )
        return Outcome(request.custom_id, request_id, error=error_object(error),
                       provider=request.target_name)
    return Outcome(request.custom_id, request_id, completion=completion,
                   provider=completion.provider or request.target_name)
