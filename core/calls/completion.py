"""The assembled result of a call: :class:`Completion`, and how it is built.

A :class:`CompletionBuilder` sees every text piece and event a provider
yields, in order; its :meth:`~CompletionBuilder.snapshot` is the
:class:`Completion` so far.  Tool-call fragments are joined per ``index``, as
OpenAI streams them.  Plain data, no pydantic or requests.

The builder keeps every text piece, so that ``stream.completion.text`` is the
whole reply: a stream holds its text until it ends (a 40 MiB reply, 40 MiB and
more).  A relay that only passes pieces on (the gateway) builds with
``keep_text=False``: pieces are counted, not kept, and the completion's text is
empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..events import Finish, Meta, Reasoning, ToolCallDelta, Usage

__all__ = ["Completion", "CompletionBuilder", "TextTally", "ToolCall"]


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asked for; ``arguments`` is the JSON text as sent."""

    id: str | None
    name: str | None
    arguments: str = ""

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's shape: ``{"id", "type": "function", "function": {"name", "arguments"}}``."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Completion:
    """A whole reply (or, from a stream that is still running or was cut, the reply so far).

    ``finish_reason`` is ``None`` until the server said why the reply ended;
    ``usage`` is ``None`` when it reported no token counts; ``model`` is the
    model the server says it used, else the requested one.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    id: str | None = None
    model: str | None = None
    provider: str | None = None
    attempts: int = 1

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation, as OpenAI shapes it."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if self.tool_calls and not self.text else self.text,
        }
        if self.tool_calls:
            message["tool_calls"] = [call.as_dict() for call in self.tool_calls]
        return message

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "usage": self.usage.as_dict() if self.usage is not None else None,
            "tool_calls": [call.as_dict() for call in self.tool_calls],
            "reasoning": self.reasoning,
            "id": self.id,
            "model": self.model,
            "provider": self.provider,
            "attempts": self.attempts,
            "message": self.message,
        }


class TextTally:
    """Text pieces counted, not kept: the ``pieces`` of a builder that keeps no text."""

    __slots__ = ("characters", "count")

    def __init__(self) -> None:
        self.count = 0
        self.characters = 0

    def append(self, piece: str) -> None:
        self.count += 1
        self.characters += len(piece)

    def __len__(self) -> int:
        return self.count


class CompletionBuilder:
    """Collects one attempt's pieces and events into a :class:`Completion`.

    :param keep_text: ``False``: count the text pieces without keeping them (the
        completion's ``text`` stays empty).
    """

    __slots__ = ("_reasoning", "_tools", "attempts", "characters", "finish_reason", "id",
                 "keep_text", "model", "pieces", "provider", "served_model", "usage")

    def __init__(self, provider: str | None, model: str | None, *,
                 keep_text: bool = True) -> None:
        self.provider = provider
        self.model = model
        self.attempts = 1
        self.keep_text = keep_text
        self.reset()

    def reset(self) -> None:
        """Forget what an attempt delivered (a buffered call starts over)."""
        #: Text pieces in order; appended to directly on the hot path.
        self.pieces: list[str] | TextTally = [] if self.keep_text else TextTally()
        self.characters = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.id: str | None = None
        self.served_model: str | None = None
        self._tools: dict[int, list[Any]] = {}
        self._reasoning: list[str] = []

    def add_event(self, event: object) -> bool:
        """Record one event; False if it is not one of :mod:`chatplug.events`' types."""
        if isinstance(event, Finish):
            self.finish_reason = event.reason
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, ToolCallDelta):
            delta = event
            slot = self._tools.get(delta.index)
            if slot is None:
                self._tools[delta.index] = [delta.id, delta.name, [delta.arguments]]
            else:
                slot[0] = slot[0] or delta.id
                slot[1] = slot[1] or delta.name
                slot[2].append(delta.arguments)
        elif isinstance(event, Reasoning):
            self._reasoning.append(event.text)
        elif isinstance(event, Meta):
            self.id = event.id or self.id
            self.served_model = event.model or self.served_model
        else:
            return False
        return True

    def has_content(self) -> bool:
        """Whether anything a caller sees as the reply arrived (text, a tool call,
        reasoning, a finish): after that a stream is committed to its provider."""
        return bool(self.pieces or self._tools or self._reasoning
                    or self.finish_reason is not None)

    @property
    def text(self) -> str:
        pieces = self.pieces
        return "" if isinstance(pieces, TextTally) else "".join(pieces)

    @property
    def text_length(self) -> int:
        """Characters of text received (kept or not)."""
        pieces = self.pieces
        if isinstance(pieces, TextTally):
            return pieces.characters
        return sum(map(len, pieces))

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [ToolCall(slot[0], slot[1], "".join(slot[2]))
                for _, slot in sorted(self._tools.items())]

    def snapshot(self) -> Completion:
        """The :class:`Completion` as far as the reply has come."""
        return Completion(
            text=self.text,
            finish_reason=self.finish_reason,
            usage=self.usage,
            tool_calls=self.tool_calls,
            reasoning="".join(self._reasoning) if self._reasoning else None,
            id=self.id,
            model=self.served_model or self.model,
            provider=self.provider,
            attempts=self.attempts,
        )
