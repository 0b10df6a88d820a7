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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..events import (
    Annotations,
    Choice,
    Finish,
    Logprobs,
    Meta,
    Reasoning,
    ReasoningSignature,
    RedactedReasoning,
    Refusal,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from ..configfile import Price

__all__ = ["Completion", "CompletionBuilder", "CompletionChoice", "TextTally", "ToolCall"]


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


def _message(text: str, tool_calls: list[ToolCall], refusal: str | None,
             annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """An assistant message as OpenAI shapes it."""
    message: dict[str, Any] = {"role": "assistant",
                               "content": None if (tool_calls or refusal) and not text else text}
    if refusal is not None:
        message["refusal"] = refusal
    if annotations:
        message["annotations"] = [dict(annotation) for annotation in annotations]
    if tool_calls:
        message["tool_calls"] = [call.as_dict() for call in tool_calls]
    return message


@dataclass(frozen=True)
class CompletionChoice:
    """One choice of a reply (``Completion.choices``; several when the request asked
    for ``n`` > 1).  ``logprobs`` is OpenAI's ``{"content": [...], "refusal": [...]}``
    when the request asked for them, else ``None``."""

    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    refusal: str | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)
    logprobs: dict[str, Any] | None = None

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message of this choice, as OpenAI shapes it."""
        return _message(self.text, self.tool_calls, self.refusal, self.annotations)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"index": self.index, "text": self.text, "finish_reason": self.finish_reason,
                "tool_calls": [call.as_dict() for call in self.tool_calls],
                "reasoning": self.reasoning, "refusal": self.refusal,
                "annotations": self.annotations, "logprobs": self.logprobs,
                "message": self.message}


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
    #: The server's own finish reason where its vocabulary differs (``end_turn``, ``SAFETY``).
    native_finish_reason: str | None = None
    #: The stop sequence that ended the reply, where the server names it.
    stop_sequence: str | None = None
    #: Signed or redacted reasoning in blocks, in order, as Anthropic shapes them:
    #: ``{"type": "thinking", "thinking": ..., "signature": ...}`` and
    #: ``{"type": "redacted_thinking", "data": ...}`` (empty when the server signs none).
    reasoning_blocks: list[dict[str, Any]] = field(default_factory=list)
    #: What the model said instead of answering (OpenAI's ``message.refusal``).
    refusal: str | None = None
    #: Annotations of the text (OpenAI's ``url_citation`` entries), in OpenAI's shape.
    annotations: list[dict[str, Any]] = field(default_factory=list)
    #: Token log probabilities (``{"content": [...], "refusal": [...]}``) when asked for.
    logprobs: dict[str, Any] | None = None
    #: OpenAI's ``system_fingerprint`` and the ``service_tier`` that served the request.
    system_fingerprint: str | None = None
    service_tier: str | None = None
    #: USD, from the ``[prices]`` of chatplug.toml (``None``: no price, or no usage).
    cost: float | None = None
    #: The choices after the first (``n`` > 1); :attr:`choices` lists them all.
    other_choices: list[CompletionChoice] = field(default_factory=list)

    @property
    def choices(self) -> list[CompletionChoice]:
        """Every choice, by index; the first is this completion's own text, finish
        reason, tool calls...  (``text`` and the rest are always choice 0's)."""
        first = CompletionChoice(0, self.text, self.finish_reason, self.tool_calls,
                                 self.reasoning, self.refusal, self.annotations,
                                 self.logprobs)
        return [first, *self.other_choices]

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation, as OpenAI shapes it.

        Signed or redacted reasoning rides along as ``thinking_blocks``, so that a
        provider that needs it back (Anthropic, Gemini) gets it exactly as it came;
        the OpenAI wire leaves it out of what it sends.
        """
        message = _message(self.text, self.tool_calls, self.refusal, self.annotations)
        if any(len(block) > 2 or block["type"] != "thinking"
               for block in self.reasoning_blocks):
            message["thinking_blocks"] = [dict(block) for block in self.reasoning_blocks]
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
            "native_finish_reason": self.native_finish_reason,
            "stop_sequence": self.stop_sequence,
            "refusal": self.refusal,
            "annotations": self.annotations,
            "logprobs": self.logprobs,
            "system_fingerprint": self.system_fingerprint,
            "service_tier": self.service_tier,
            "cost": self.cost,
            "message": self.message,
            "choices": [choice.as_dict() for choice in self.choices],
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

    __slots__ = ("_annotations", "_blocks", "_choices", "_logprobs", "_reasoning", "_refusal",
                 "_tools", "attempts", "characters", "finish_reason", "id", "keep_text",
                 "model", "native_finish_reason", "pieces", "prices", "provider",
                 "served_model", "service_tier", "stop_sequence", "system_fingerprint", "usage")

    def __init__(self, provider: str | None, model: str | None, *,
                 keep_text: bool = True) -> None:
        self.provider = provider
        self.model = model
        self.attempts = 1
        self.keep_text = keep_text
        #: ``[prices]`` (:func:`chatplug.accounting.pricing.price_list`), to fill ``cost``.
        self.prices: Mapping[str, Price] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget what an attempt delivered (a buffered call starts over)."""
        #: Text pieces in order; appended to directly on the hot path.
        self.pieces: list[str] | TextTally = [] if self.keep_text else TextTally()
        self.characters = 0
        self.finish_reason: str | None = None
        self.native_finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.usage: Usage | None = None
        self.id: str | None = None
        self.served_model: str | None = None
        self._tools: dict[int, list[Any]] = {}
        self._reasoning: list[str] = []
        #: Reasoning blocks closed by a signature or redacted; the open block's text is
        #: ``_reasoning`` past the length these blocks account for.
        self._blocks: list[dict[str, Any]] = []
        self._refusal: list[str] = []
        self._annotations: list[dict[str, Any]] = []
        self._logprobs: dict[str, list[Any]] | None = None
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        #: The choices after the first, each assembled by a builder of its own.
        self._choices: dict[int, CompletionBuilder] = {}

    def add_event(self, event: object) -> bool:
        """Record one event; False if it is not one of :mod:`chatplug.events`' types."""
        if isinstance(event, Finish):
            self.finish_reason = event.reason
            self.native_finish_reason = event.native or self.native_finish_reason
            self.stop_sequence = event.stop_sequence or self.stop_sequence
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
        elif isinstance(event, ReasoningSignature):
            self._blocks.append({"type": "thinking", "thinking": self._open_reasoning(),
                                 "signature": event.signature})
        elif isinstance(event, RedactedReasoning):
            self._close_reasoning()
            self._blocks.append({"type": "redacted_thinking", "data": event.data})
        elif isinstance(event, Meta):
            self.id = event.id or self.id
            self.served_model = event.model or self.served_model
            self.system_fingerprint = event.system_fingerprint or self.system_fingerprint
            self.service_tier = event.service_tier or self.service_tier
        elif isinstance(event, Refusal):
            self._refusal.append(event.text)
        elif isinstance(event, Annotations):
            self._annotations.extend(event.items)
        elif isinstance(event, Logprobs):
            if self._logprobs is None:
                self._logprobs = {"content": [], "refusal": []}
            self._logprobs["content"].extend(event.content or ())
            self._logprobs["refusal"].extend(event.refusal or ())
        elif isinstance(event, Choice):
            return self._add_to_choice(event)
        else:
            return False
        return True

    def _add_to_choice(self, event: Choice) -> bool:
        if event.index == 0:  # a provider that wraps its first choice too
            item = event.item
            if type(item) is str:
                self.pieces.append(item)
                return True
            return self.add_event(item)
        choice = self._choices.get(event.index)
        if choice is None:
            choice = self._choices[event.index] = CompletionBuilder(
                None, None, keep_text=self.keep_text)
        if isinstance(event.item, str):
            choice.pieces.append(event.item)
            return True
        return not isinstance(event.item, Choice) and choice.add_event(event.item)

    def _open_reasoning(self) -> str:
        """The text of the reasoning block not yet closed."""
        closed = sum(len(block["thinking"]) for block in self._blocks
                     if block["type"] == "thinking")
        return "".join(self._reasoning)[closed:]

    def _close_reasoning(self) -> None:
        """Close an unsigned open block (its text becomes a block of its own)."""
        text = self._open_reasoning()
        if text:
            self._blocks.append({"type": "thinking", "thinking": text})

    def reasoning_blocks(self) -> list[dict[str, Any]]:
        """Every reasoning block so far, in order, the open one last (unsigned)."""
        blocks = [dict(block) for block in self._blocks]
        text = self._open_reasoning()
        if text:
            blocks.append({"type": "thinking", "thinking": text})
        return blocks

    def has_content(self) -> bool:
        """Whether anything a caller sees as the reply arrived (text, a tool call,
        reasoning, a finish): after that a stream is committed to its provider."""
        return bool(self.pieces or self._tools or self._reasoning or self._blocks
                    or self.finish_reason is not None or self._refusal or self._choices)

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

    def _logprobs_dict(self) -> dict[str, Any] | None:
        logprobs = self._logprobs
        if logprobs is None:
            return None
        return {"content": list(logprobs["content"]) or None,
                "refusal": list(logprobs["refusal"]) or None}

    def choice(self, index: int) -> CompletionChoice:
        """This builder's reply as choice ``index``."""
        return CompletionChoice(index, self.text, self.finish_reason, self.tool_calls,
                                "".join(self._reasoning) if self._reasoning else None,
                                "".join(self._refusal) if self._refusal else None,
                                list(self._annotations), self._logprobs_dict())

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
            native_finish_reason=self.native_finish_reason,
            stop_sequence=self.stop_sequence,
            reasoning_blocks=self.reasoning_blocks() if self._blocks else [],
            refusal="".join(self._refusal) if self._refusal else None,
            annotations=list(self._annotations),
            logprobs=self._logprobs_dict(),
            system_fingerprint=self.system_fingerprint,
            service_tier=self.service_tier,
            other_choices=[builder.choice(index)
                           for index, builder in sorted(self._choices.items())],
            cost=self._cost() if self.prices else None,
        )

    def _cost(self) -> float | None:
        from ..accounting.pricing import cost_of

        return cost_of(self.usage, self.provider, self.served_model or self.model,
                       self.prices or {}, self.model)
