"""One exchange as the terminal sees it: the request sent, the reply printed as it streams
(or whole, or as JSON), the waiting status until it starts, Ctrl-C stopping it, and the
notes on stderr afterwards."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ChatplugError, StreamInterruptedError
from .output import Output, note, print_json
from .terminal import Status

if TYPE_CHECKING:
    from ..calls.completion import Completion

__all__ = ["Outcome", "report", "send"]

#: What a finish reason means for the person reading, when it is worth a note.
FINISH_NOTES = {
    "length": "the reply was cut at the token limit (finish_reason length); ask for more "
              "room with -o max_tokens=N where the provider takes it",
    "content_filter": "the provider's content filter stopped the reply "
                      "(finish_reason content_filter)",
}


@dataclass
class Outcome:
    """How one exchange ended: the text printed, the completion, the error if it failed,
    ``stopped`` if Ctrl-C ended it."""

    text: str
    completion: Completion | None
    error: ChatplugError | None
    stopped: bool
    duration_s: float


def send(
    target: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    model: str | None,
    params: Mapping[str, Any],
    call: Mapping[str, Any],
    stream: bool,
    as_json: bool,
    out: Output,
    status: Status,
    extra: Mapping[str, Any] | None = None,
) -> Outcome:
    """Send ``messages`` to ``target`` (a provider, or anything with its caller API) with
    the provider ``params`` and the ``call`` options (``timeout``...), and print the reply
    (``extra`` joins the JSON of ``as_json``).  Chatplug's errors are returned in the
    :class:`Outcome`, never raised; Ctrl-C stops the reply (the stream is closed) and is
    reported as ``stopped``.

    :raises OutputError: standard output cannot be written.
    """
    options = {**params, **call}
    started = time.perf_counter()
    completion: Completion | None = None
    error: ChatplugError | None = None
    stopped = False
    reply: Any = None
    status.start()
    try:
        if stream:
            reply = target.create(messages, model=model, stream=True, **options)
            with reply:
                for piece in reply:
                    status.stop()
                    out.write(piece)
            completion = reply.completion
        else:
            completion = target.complete(messages, model=model, **options)
            status.stop()
            if as_json:
                print_json({**completion.as_dict(), **(extra or {})}, out)
            else:
                out.write(completion.text)
    except KeyboardInterrupt:
        stopped = True
        if reply is not None:
            reply.close()  # the HTTP response is closed; the server sees the connection go
            completion = reply.completion
    except ChatplugError as exc:
        error = exc
        if isinstance(exc, StreamInterruptedError) and exc.completion is not None:
            completion = exc.completion
        elif reply is not None:
            completion = reply.completion
    finally:
        status.stop()
    text = completion.text if completion is not None else ""
    return Outcome(text, completion, error, stopped, time.perf_counter() - started)


def report(outcome: Outcome, out: Output, *, usage: bool) -> None:
    """End the reply's line, then the notes on stderr: stopped, cut short, filtered,
    tool calls, the token usage (``usage``)."""
    if outcome.error is None or out.isatty():
        out.end_line()
    if outcome.stopped:
        note("stopped (Ctrl-C)")
    completion = outcome.completion
    if completion is None or outcome.error is not None:
        return
    if completion.finish_reason in FINISH_NOTES:
        note(f"note: {FINISH_NOTES[completion.finish_reason]}")
    if completion.tool_calls:
        names = ", ".join(call.name or "?" for call in completion.tool_calls)
        note(f"note: the model asked for tool calls ({names}); --json shows them")
    if usage:
        counts = completion.usage
        if counts is None:
            note("usage: the server reported no token usage")
        else:
            note(f"usage: {counts.prompt_tokens} prompt + {counts.completion_tokens} "
                 f"completion = {counts.total_tokens} tokens")
