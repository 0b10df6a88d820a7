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
from typing import Union

__all__ = ["Event", "Finish", "Meta", "Reasoning", "ToolCallDelta", "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the server reported them (``None`` where it gave none)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True, slots=True)
class Finish:
    """Why the reply ended: ``"stop"``, ``"length"``, ``"tool_calls"``,
    ``"content_filter"``, or whatever the server said."""

    reason: str


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
    """Reasoning text some servers send beside the answer (``reasoning_content``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Meta:
    """The response id and the model the server says it used."""

    id: str | None = None
    model: str | None = None


#: Every event type a provider may yield (``str`` aside).
Event = Union[Usage, Finish, ToolCallDelta, Reasoning, Meta]  # noqa: UP007
EVENT_TYPES: tuple[type, ...] = (Usage, Finish, ToolCallDelta, Reasoning, Meta)
