"""What a provider may yield beside text: the rest of a chat exchange.

A provider's ``create_completion`` yields ``str`` for text and, where its
server reports them, these events, in the order they arrive::

    yield Meta(id="chatcmpl-1", model="gpt-4o-mini")
    yield "Hello"
    yield ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"q": ')
    yield ToolCallDelta(index=0, arguments='"weather"}')
    yield Finish("tool_calls")
    yield Usage(prompt_tokens=12, completion_tokens=7, total_tokens=19)

A reply with several choices (``n`` > 1) yields choice 0 as above and every other
choice's pieces and events wrapped in :class:`Choice` (``Choice(1, "Hi")``,
``Choice(1, Finish("stop"))``).

They are plain frozen dataclasses (no pydantic, no requests), so a provider
module that yields them stays cheap to import.  Anything else yielded is a
bug in the plugin and is reported as :class:`chatplug.ProviderResponseError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "CHAT_ONLY",
    "Annotations",
    "Choice",
    "Event",
    "Finish",
    "Logprobs",
    "Meta",
    "Reasoning",
    "ReasoningSignature",
    "RedactedReasoning",
    "Refusal",
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
    #: OpenAI's ``prompt_tokens_details.audio_tokens``.
    prompt_audio_tokens: int | None = None
    #: OpenAI's ``completion_tokens_details.audio_tokens``.
    completion_audio_tokens: int | None = None
    #: Predicted output tokens that appeared in the reply (OpenAI's predicted outputs).
    accepted_prediction_tokens: int | None = None
    #: Predicted output tokens that did not (still billed).
    rejected_prediction_tokens: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's ``usage`` shape; the details only where the server reported them."""
        data: dict[str, Any] = {"prompt_tokens": self.prompt_tokens,
                                "completion_tokens": self.completion_tokens,
                                "total_tokens": self.total_tokens}
        prompt = _present(cached_tokens=self.cached_tokens,
                          cache_creation_tokens=self.cache_creation_tokens,
                          audio_tokens=self.prompt_audio_tokens)
        if prompt:
            data["prompt_tokens_details"] = prompt
        completion = _present(reasoning_tokens=self.reasoning_tokens,
                              audio_tokens=self.completion_audio_tokens,
                              accepted_prediction_tokens=self.accepted_prediction_tokens,
                              rejected_prediction_tokens=self.rejected_prediction_tokens)
        if completion:
            data["completion_tokens_details"] = completion
        return data


def _present(**counts: int | None) -> dict[str, int]:
    return {name: count for name, count in counts.items() if count is not None}


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
    """The response id and the model the server says it used; OpenAI's
    ``system_fingerprint`` and the ``service_tier`` that served the request, where the
    reply names them."""

    id: str | None = None
    model: str | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A piece of the model's refusal (OpenAI's ``message.refusal``, ``delta.refusal``):
    text said instead of the answer; the pieces join into ``Completion.refusal``."""

    text: str


@dataclass(frozen=True, slots=True)
class Logprobs:
    """Token log probabilities of a piece of the reply, as OpenAI sends them: ``content``
    and ``refusal`` are lists of ``{"token", "logprob", "bytes", "top_logprobs"}``
    entries (``None`` where the server sent none)."""

    content: list[dict[str, Any]] | None = None
    refusal: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Annotations:
    """Annotations of the reply's text (OpenAI's ``url_citation`` entries of search
    models), in OpenAI's shape."""

    items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Choice:
    """What a choice other than the first carries (a request with ``n`` > 1): its
    ``index`` and one text piece (``str``) or event of that choice.  Choice 0's text
    and events come as they are, unwrapped, so a reader that knows nothing of ``n``
    sees the first choice only, never the others merged into it."""

    index: int
    item: str | Event


#: Every event type a provider may yield (``str`` aside).
Event = Union[  # noqa: UP007
    Usage, Finish, ToolCallDelta, Reasoning, ReasoningSignature, RedactedReasoning, Meta,
    Refusal, Logprobs, Annotations, Choice]
EVENT_TYPES: tuple[type, ...] = (Usage, Finish, ToolCallDelta, Reasoning, ReasoningSignature,
                                 RedactedReasoning, Meta, Refusal, Logprobs, Annotations,
                                 Choice)
#: Events only OpenAI's chat-completions wire has a place for: the gateway's other wires
#: (``/v1/messages``, ``/v1/responses``) relay choice 0's text and leave these out.
CHAT_ONLY: tuple[type, ...] = (Refusal, Logprobs, Annotations, Choice)
