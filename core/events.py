"""What a provider may yield beside text: the rest of a chat exchange.

A provider's ``create_completion`` yields ``str`` for text and, where its
server reports them, these events, in the order they arrive::

    yield Meta(id="chatcmpl-1", model="gpt-4o-mini")
    yield "Hello"
    yield ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"q": ')
    yield ToolCallDelta(index=0, arguments='"weather"}')
    yield Finish("tool_calls")
    yield Usage(prompt_tokens=12, completion_tokens=7, total_tokens=19)

They are plain frozen dataclasses (no pydantic, no requests), so a provider
module that yields them stays cheap to import.  Anything else yielded is a
bug in the plugin and is reported as :class:`chatplug.ProviderResponseError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "Event",
    "Finish",
    "Meta",
    "Reasoning",
    "ReasoningSignature",
    "RedactedReasoning",
    "ToolCallDelta",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the server reported them (``None`` where it gave none).

    ``prompt_tokens`` counts every input token, cached ones included (as OpenAI's
    does; Anthropic's three input counts are added up).  ``cached_tokens`` are the
    input tokens read from a prompt cache, ``cache_creation_tokens`` those written
    to one (Anthropic), ``reasoning_tokens`` the output tokens spent on reasoning.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's ``usage`` shape; the details only where the server reported them."""
        data: dict[str, Any] = {"prompt_tokens": self.prompt_tokens,
                                "completion_tokens": self.completion_tokens,
                                "total_tokens": self.total_tokens}
        if self.cached_tokens is not None or self.cache_creation_tokens is not None:
            details: dict[str, int] = {}
            if self.cached_tokens is not None:
                details["cached_tokens"] = self.cached_tokens
            if self.cache_creation_tokens is not None:
                details["cache_creation_tokens"] = self.cache_creation_tokens
            data["prompt_tokens_details"] = details
        if self.reasoning_tokens is not None:
            data["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return data


@dataclass(frozen=True, slots=True)
class Finish:
    """Why the reply ended: ``"stop"``, ``"length"``, ``"tool_calls"``,
    ``"content_filter"``, or whatever the server said.

    ``native`` is the server's own reason where its wire has another vocabulary
    (Anthropic's ``end_turn``, Gemini's ``SAFETY``); ``stop_sequence`` the stop
    sequence that ended the reply, where the server names it.
    """

    reason: str
    native: str | None = None
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call; fragments with one ``index`` join into one call,
    as OpenAI streams them (the first usually carries ``id`` and ``name``)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Reasoning text some servers send beside the answer (``reasoning_content``,
    Anthropic's ``thinking``, Gemini's thought parts)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningSignature:
    """The signature that closes the reasoning block so far (Anthropic's ``signature``,
    Gemini's ``thoughtSignature``): the server needs it back, unchanged, with the
    block when the assistant message is part of a later request."""

    signature: str


@dataclass(frozen=True, slots=True)
class RedactedReasoning:
    """A reasoning block the server sent encrypted (Anthropic's ``redacted_thinking``):
    opaque ``data`` to send back as it came."""

    data: str


@dataclass(frozen=True, slots=True)
class Meta:
    """The response id and the model the server says it used."""

    id: str | None = None
    model: str | None = None


#: Every event type a provider may yield (``str`` aside).
Event = Union[  # noqa: UP007
    Usage, Finish, ToolCallDelta, Reasoning, ReasoningSignature, RedactedReasoning, Meta]
EVENT_TYPES: tuple[type, ...] = (Usage, Finish, ToolCallDelta, Reasoning, ReasoningSignature,
                                 RedactedReasoning, Meta)
