"""What the scripted server is told to answer (:class:`Script`) and what it heard
(:class:`RecordedRequest`).  Plain data; the wire formats live in ``protocols``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecordedRequest", "Script", "echo_text", "echo_tool_call", "script_from",
           "split_words"]


def split_words(text: str) -> list[str]:
    """Split text into word pieces that join back to it exactly ("Hello", " world")."""
    pieces: list[str] = []
    for index, word in enumerate(text.split(" ")):
        pieces.append(word if index == 0 else " " + word)
    return [p for p in pieces if p]


@dataclass
class Script:
    """One scripted reply.  Every field has a harmless default.

    The same fields drive every protocol the server speaks; where a protocol
    has no such thing (comments in NDJSON), the nearest equivalent is used.

    :ivar text: the reply text (split into word pieces when streaming).
    :ivar pieces: explicit pieces, instead of ``text``.
    :ivar status: HTTP status; >= 400 sends the protocol's error object.
    :ivar stream: ``None`` follows the request; ``True``/``False`` forces a stream/JSON.
    :ivar delay: seconds to wait before sending the headers.
    :ivar piece_delay: seconds between pieces.
    :ivar hold_after: after this many pieces, wait ``hold`` seconds before the rest.
    :ivar newline: line terminator of the stream (``"\\n"``, ``"\\r\\n"``, ``"\\r"``).
    :ivar split: send the stream in HTTP chunks of this many bytes (splits CRLF
        pairs and multi-byte characters across reads).
    :ivar comments: SSE: a ``: keep-alive`` comment before each event; NDJSON: a
        blank line before each object.
    :ivar finish: SSE: send a final chunk with the ``finish_reason`` (see below).
    :ivar done: SSE: send ``data: [DONE]``; NDJSON: send the final ``"done": true`` object.
    :ivar error_event: an ``{"error": ...}`` payload sent after the pieces (NDJSON
        sends its ``message`` as Ollama does: ``{"error": "text"}``).
    :ivar drop_after: close the connection abruptly after this many pieces.
    :ivar reset: with ``drop_after``, send a TCP reset instead of a close.
    :ivar chunked: use chunked transfer encoding (else close-delimited).
    :ivar body: raw bytes to send as the body instead of anything above.
    :ivar content_type: overrides the Content-Type.
    :ivar headers: extra response headers.
    :ivar echo_key: append the credential the request carried (``Authorization``,
        ``api-key`` or ``x-api-key``) to every error text, as careless servers do;
        proves a client redacts it.
    :ivar method: the request method this script answers (``"GET"`` scripts
        answer probes such as ``chatplug providers --check``).
    :ivar finish_reason: the reason the reply ends with (``"length"``, ...); ``None``
        says ``"tool_calls"`` when tool calls are scripted, else ``"stop"``.  Ollama
        sends it as ``done_reason``.
    :ivar usage: the ``usage`` object to report, as the server would send it
        (``{"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}``): in
        the JSON reply, as the last chunk of a stream (``choices`` empty, after the
        finish chunk), and in Ollama's last object as ``prompt_eval_count`` /
        ``eval_count``.  ``None`` reports none.
    :ivar tool_calls: whole tool calls in OpenAI's shape (``{"id", "type": "function",
        "function": {"name", "arguments": JSON text}}``): in the JSON reply's message;
        streamed as OpenAI does (a first fragment with id and name, then the
        arguments in fragments of ``fragment`` characters); for Ollama in one
        object, the arguments as an object and without id.
    :ivar fragment: characters of a tool call's arguments per streamed fragment.
    :ivar reasoning: reasoning text sent beside the answer: ``reasoning_content``
        (split into word pieces before the text when streaming), Ollama's
        ``message.thinking``.
    :ivar id: the response id the reply carries.
    :ivar model: the model the reply says it used (``None``: the requested one).
    :ivar signature: Anthropic: the signature of the thinking block (``reasoning``);
        Gemini: the ``thoughtSignature`` of a reply with ``reasoning``.
    :ivar redacted: Anthropic: ``redacted_thinking`` blocks' data, after the thinking.
    :ivar stop_sequence: Anthropic: the stop sequence the reply names.
    :ivar choices: OpenAI: the texts of the choices after the first (index 1, 2, ...),
        streamed after choice 0's pieces, each chunk with its ``index``; ``None``: as many
        copies of ``text`` as the request's ``n`` asks for.
    :ivar logprobs: OpenAI: send token log probabilities (one entry per piece, with the
        request's ``top_logprobs`` alternatives); ``None`` follows the request's ``logprobs``.
    :ivar refusal: OpenAI: the refusal the reply carries (``message.refusal``, streamed as
        ``delta.refusal``); ``text`` is sent too unless empty.
    :ivar annotations: OpenAI: the message's annotations (``url_citation`` entries).
    :ivar error: the error object's fields beside ``message`` for a ``status`` >= 400
        (OpenAI: ``{"type": ..., "code": ..., "param": ...}``).
    :ivar system_fingerprint: OpenAI: the reply's ``system_fingerprint``.
    :ivar service_tier: OpenAI: the reply's ``service_tier``.

    When streaming, reasoning pieces, text pieces and tool-call fragments are sent in
    that order, each as one event (or line); ``drop_after``, ``hold_after`` and
    ``piece_delay`` count them all.
    """

    text: str = "Hello from the chatplug test server."
    pieces: list[str] | None = None
    status: int = 200
    stream: bool | None = None
    delay: float = 0.0
    piece_delay: float = 0.0
    hold_after: int | None = None
    hold: float = 0.0
    newline: str = "\n"
    split: int | None = None
    comments: bool = False
    finish: bool = True
    done: bool = True
    error_event: dict[str, Any] | None = None
    drop_after: int | None = None
    reset: bool = False
    chunked: bool = True
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    echo_key: bool = False
    method: str = "POST"
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    fragment: int = 8
    reasoning: str | None = None
    id: str = "chatcmpl-test"
    model: str | None = None
    signature: str = "c2lnbmF0dXJlLXRlc3Q="
    redacted: list[str] | None = None
    stop_sequence: str | None = None
    choices: list[str] | None = None
    logprobs: bool | None = None
    refusal: str | None = None
    annotations: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None

    def reply_pieces(self) -> list[str]:
        return list(self.pieces) if self.pieces is not None else split_words(self.text)

    def reasoning_pieces(self) -> list[str]:
        return split_words(self.reasoning) if self.reasoning else []

    def reason(self) -> str:
        """The finish reason to send."""
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def tool_call_fragments(self) -> list[dict[str, Any]]:
        """The streamed ``delta.tool_calls`` entries, as OpenAI sends them."""
        fragments: list[dict[str, Any]] = []
        step = max(1, self.fragment)
        for index, call in enumerate(self.tool_calls or ()):
            function = call.get("function", {})
            fragments.append({"index": index, "id": call.get("id"),
                              "type": call.get("type", "function"),
                              "function": {"name": function.get("name"), "arguments": ""}})
            arguments = str(function.get("arguments", ""))
            fragments.extend({"index": index, "function": {"arguments": arguments[at:at + step]}}
                             for at in range(0, len(arguments), step))
        return fragments


def script_from(fields: dict[str, Any]) -> Script:
    """A :class:`Script` from JSON fields (the command line's ``--script`` file);
    ``body`` may be text.

    :raises ValueError: an unknown field, naming it.
    """
    known = set(Script.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown script field {unknown[0]!r}; the fields are "
                         f"{', '.join(sorted(known))}")
    if isinstance(fields.get("body"), str):
        fields = {**fields, "body": fields["body"].encode()}
    return Script(**fields)


def echo_tool_call(request: dict[str, Any]) -> list[dict[str, Any]] | None:
    """What the echo answers a request offering tools whose last message is the user's:
    a call of the first tool (arguments ``{}``), so a tool round trip runs offline."""
    tools = request.get("tools")
    messages = request.get("messages") or []
    if not isinstance(tools, list) or not tools or not messages \
            or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return None
    function = tools[0].get("function") if isinstance(tools[0], dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        return None
    return [{"id": "call_echo_1", "type": "function",
             "function": {"name": name, "arguments": "{}"}}]


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received: method, path, headers and body (parsed JSON if it was)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def echo_text(request: dict[str, Any]) -> str:
    """The default reply: ``You said: <last user message>`` (after a tool's result:
    ``The tool said: <result>``)."""
    messages = request.get("messages") or []
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return f"The tool said: {messages[-1].get('content')}"
    last = next((m.get("content") for m in reversed(messages)
                 if isinstance(m, dict) and m.get("role") == "user"), None)
    if last is None:  # Gemini: contents of parts
        contents = request.get("contents") or []
        turn = next((c for c in reversed(contents)
                     if isinstance(c, dict) and c.get("role") == "user"), None)
        if turn is not None:
            last = turn.get("parts")
    if isinstance(last, list):  # parts (OpenAI, Gemini) or blocks (Anthropic): their text
        texts = [part.get("text") for part in last
                 if isinstance(part, dict) and part.get("type", "text") == "text"]
        last = " ".join(text for text in texts if isinstance(text, str)) or None
    return f"You said: {last}" if isinstance(last, str) else "Hello from the chatplug test server."
