"""Logging for applications that want it: :class:`LogObserver`.

The library never logs by itself.  An application opts in by registering the
observer on its registry::

    from chatplug import registry
    from chatplug.logs import LogObserver

    registry.register_observer(LogObserver(), name="logs")

Then every completion of that registry is a row in the logs database (the one
``chatplug logs`` reads, unless given another :class:`LogStore`): provider,
model, duration, attempts, finish reason, usage, and the error of a failed
call.  Observers never see the messages or the key, so neither does the log;
to log the text as well, call :meth:`LogStore.record` with a :class:`Record`
built from your messages and the :class:`chatplug.Completion`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hooks import hookimpl
from .store import LogStore, Record

if TYPE_CHECKING:
    from ..events import Usage

__all__ = ["LogObserver"]


class LogObserver:
    """An observer writing one :class:`Record` per completion to ``store``.

    Each call is its own conversation (its request id).  A row that cannot be
    written is dropped with a warning in the ``chatplug.provider`` log: an
    observer never breaks a completion.
    """

    def __init__(self, store: LogStore | None = None) -> None:
        self.store = store or LogStore()

    @hookimpl
    def chatplug_on_response(
        self,
        provider: str,
        model: str,
        request_id: str,
        duration_s: float,
        attempts: int,
        outcome: str,
        finish_reason: str | None,
        usage: Usage | None,
        route: str | None,
    ) -> None:
        self.store.record(Record(
            conversation_id=request_id, provider=provider, model=model, route=route,
            finish_reason=finish_reason, duration_s=round(duration_s, 6), attempts=attempts,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            error=None if outcome == "complete" else f"the caller {outcome} the stream early",
        ))

    @hookimpl
    def chatplug_on_error(
        self,
        provider: str,
        model: str,
        request_id: str,
        duration_s: float,
        attempts: int,
        error: Exception,
        route: str | None,
    ) -> None:
        self.store.record(Record(
            conversation_id=request_id, provider=provider, model=model, route=route,
            duration_s=round(duration_s, 6), attempts=attempts,
            error=(str(error).splitlines() or [""])[0],
            error_code=getattr(error, "code", type(error).__name__),
        ))
