"""A chat session: the conversation kept between turns, each turn sent and logged.

A :class:`Conversation` holds the earlier turns that go with each new prompt;
it starts empty, or from the logs (``-c``: the latest conversation, ``--cid``:
a given one).  The :class:`Logbook` writes one row per exchange to the logs
database unless logging is off (``--no-log``, ``CHATPLUG_LOG=off``); a row
that cannot be written costs a warning, never the reply.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ChatplugError, StorageError
from .exchange import Outcome, report, send
from .output import Output, UsageError, warn
from .terminal import RetryAnnouncer, Status, is_terminal

if TYPE_CHECKING:
    from ..logs.store import LogStore, Record

__all__ = ["Conversation", "Logbook", "Session", "logging_enabled"]

LOG_VARIABLE = "CHATPLUG_LOG"
_OFF = frozenset({"off", "0", "false", "no"})


def logging_enabled(no_log: bool) -> bool:
    """Whether this run logs: not with ``--no-log``, nor with ``CHATPLUG_LOG=off``."""
    return not no_log and os.environ.get(LOG_VARIABLE, "").strip().lower() not in _OFF


class Logbook:
    """The logs database as the CLI uses it: opened on first use, never fatal."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._store: LogStore | None = None

    @property
    def store(self) -> LogStore:
        if self._store is None:
            from ..logs.store import LogStore

            self._store = LogStore()
        return self._store

    def write(self, record: Record) -> int | None:
        if not self.enabled:
            return None
        try:
            return self.store.record(record)
        except StorageError as exc:
            warn(f"this exchange was not logged: {exc}")
            self.enabled = False  # one warning per run, not one per turn
            return None

    def conversation(self, conversation_id: str | None) -> Conversation:
        """The logged conversation ``conversation_id``, or the latest one (``None``).

        :raises UsageError: nothing is logged, or no such conversation.
        :raises StorageError: the database cannot be read.
        """
        cid = conversation_id or self.store.latest_conversation()
        if cid is None:
            raise UsageError(f"no conversation is logged yet in {self.store.path}; start one "
                             "without -c")
        records = self.store.conversation(cid)
        if not records:
            raise UsageError(f"no conversation {cid!r} in the logs ({self.store.path}); "
                             "`chatplug logs` lists them")
        return Conversation.from_records(cid, records)


@dataclass
class Conversation:
    """The turns so far (user and assistant messages) and the system message."""

    id: str
    system: str | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    #: Who answered last (a continued conversation goes on with them by default).
    provider: str | None = None
    model: str | None = None

    @classmethod
    def new(cls, system: str | None = None) -> Conversation:
        from ..logs.store import new_conversation_id

        return cls(new_conversation_id(), system)

    @classmethod
    def from_records(cls, conversation_id: str, records: list[Record]) -> Conversation:
        """The conversation as logged: every exchange that got a reply, in order."""
        conversation = cls(conversation_id)
        for record in records:
            if record.prompt is not None and record.reply:
                conversation.add(record.prompt, record.reply)
            conversation.system = record.system
            conversation.provider = record.provider
            conversation.model = record.model
        return conversation

    def messages(self, prompt: str) -> list[dict[str, Any]]:
        """What goes with ``prompt``: the system message, the earlier turns, the prompt."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, *self.turns, {"role": "user", "content": prompt}]

    def add(self, prompt: str, reply: str) -> None:
        self.turns += [{"role": "user", "content": prompt},
                       {"role": "assistant", "content": reply}]

    def reset(self) -> None:
        """A new conversation (a new id, no turns; the system message stays)."""
        self.id = Conversation.new().id
        self.turns = []


@dataclass
class Session:
    """Everything one ``chatplug chat`` sends each turn with."""

    target: Any
    conversation: Conversation
    logbook: Logbook
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    stream: bool = True
    as_json: bool = False
    usage: bool = False
    route: str | None = None
    out: Output = field(default_factory=Output)
    announcer: RetryAnnouncer | None = None
    #: Say where the prompt goes, once per conversation (the provider was not named, and
    #: a person reads stderr, the status's terminal: a script's log keeps its one line
    #: per failure).
    announce: bool = False
    _announced: str | None = field(default=None, init=False, repr=False)

    @property
    def destination(self) -> str:
        """``GravityEngine at gpt4.xunika.uk``: the provider and the host a prompt goes to."""
        from urllib.parse import urlsplit

        url = getattr(self.target, "url", None)
        host = urlsplit(url).netloc if isinstance(url, str) else ""
        return f"{self.target.name} at {host}" if host else str(self.target.name)

    @property
    def label(self) -> str:
        """What the status says it is waiting for: ``GravityEngine (gpt-3.5-turbo-16k)``."""
        model = self._requested_model()
        return f"{self.target.name} ({model})" if model else str(self.target.name)

    def turn(self, prompt: str) -> Outcome:
        """Send ``prompt`` with the conversation so far, print the reply, log it.  The
        turn joins the conversation when a reply came (a stopped one with its text so far).

        :raises OutputError: standard output cannot be written.
        """
        messages = self.conversation.messages(prompt)
        status = Status(self.label, enabled=is_terminal(sys.stderr))
        if self.announce and self._announced != self.conversation.id:
            self._announced = self.conversation.id
            # Said by the status, already waiting: the URL may take reading the settings.
            status.start().announce(f"sending to {self.destination} (choose another "
                                    "provider with -p)")
        if self.announcer is not None:
            self.announcer.status = status
        try:
            call = {"timeout": self.timeout} if self.timeout is not None else {}
            outcome = send(self.target, messages, model=self.model, params=self.params,
                           call=call, stream=self.stream, as_json=self.as_json,
                           out=self.out, status=status,
                           extra={"conversation_id": self.conversation.id})
        finally:
            if self.announcer is not None:
                self.announcer.status = None
        report(outcome, self.out, usage=self.usage)
        if outcome.error is None and (outcome.text or not outcome.stopped):
            self.conversation.add(prompt, outcome.text)
        self.logbook.write(self._record(prompt, messages, outcome))
        return outcome

    def _record(self, prompt: str, messages: list[dict[str, Any]], outcome: Outcome) -> Record:
        from ..logs.store import Record

        completion = outcome.completion
        usage = completion.usage if completion is not None else None
        error = outcome.error
        options = dict(self.params)
        if self.timeout is not None:
            options["timeout"] = self.timeout
        record = Record(
            conversation_id=self.conversation.id,
            provider=(completion.provider if completion is not None else None)
            or getattr(error, "provider", None) or str(self.target.name),
            route=self.route,
            model=getattr(error, "model", None) or self._requested_model(),
            system=self.conversation.system,
            prompt=prompt,
            messages=messages,
            reply=outcome.text if (completion is not None or outcome.text) else None,
            reasoning=completion.reasoning if completion is not None else None,
            tool_calls=[c.as_dict() for c in completion.tool_calls] if completion else [],
            options=options,
            stream=self.stream,
            finish_reason=completion.finish_reason if completion is not None else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            duration_s=round(outcome.duration_s, 6),
            attempts=(len(error.attempts) or 1) if error is not None
            else (completion.attempts if completion is not None else None),
        )
        if error is not None:
            record.error = str(error).splitlines()[0]
            record.error_code = error.code
        elif outcome.stopped:
            record.error, record.error_code = "stopped with Ctrl-C", "interrupted"
        return record

    def _requested_model(self) -> str | None:
        """The model the target will use (its default when none was named)."""
        resolve = getattr(self.target, "resolve_model", None)
        if resolve is None:
            return self.model
        try:
            return str(resolve(self.model))
        except ChatplugError:
            return self.model
