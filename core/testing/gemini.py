"""Google's Gemini API as the scripted server writes it, from a :class:`Script`.

A whole reply is one ``GenerateContentResponse``; a stream (``alt=sse``) is one such
response per piece — thought parts (``thought: true``), text parts, then each
function call whole, as Gemini sends them — and a last chunk with the
``finishReason`` and the usage, with no end marker.  With ``reasoning`` scripted the
reply is signed: ``thoughtSignature`` on the first ``functionCall`` part, else on the
last part.  Function calls carry no ``id`` (clients make their own).  Errors are
``{"error": {"code", "message", "status"}}``.

The script's fields mean what they mean for every protocol: ``usage`` is sent as
given when it is Gemini's (``promptTokenCount``...), OpenAI's counts renamed;
``finish_reason`` is the native ``finishReason`` (default ``STOP``).
"""

from __future__ import annotations

import json
from typing import Any

from .script import Script

__all__ = ["STATUSES", "candidate_chunk", "model_page", "pieces", "response", "usage"]

#: The ``status`` Gemini's envelope names with each HTTP status.
STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
            404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
            503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_NATIVE_COUNTS = ("promptTokenCount", "candidatesTokenCount", "totalTokenCount",
                  "cachedContentTokenCount", "thoughtsTokenCount")


def usage(script: Script) -> dict[str, Any] | None:
    counts = script.usage
    if counts is None:
        return None
    if any(key in counts for key in _NATIVE_COUNTS):
        return dict(counts)
    renamed = {"promptTokenCount": counts.get("prompt_tokens"),
               "candidatesTokenCount": counts.get("completion_tokens"),
               "totalTokenCount": counts.get("total_tokens")}
    return {key: value for key, value in renamed.items() if value is not None}


def _call_part(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function", {})
    try:
        args = json.loads(function.get("arguments") or "{}")
    except ValueError:
        args = {}
    return {"functionCall": {"name": function.get("name"), "args": args}}


def candidate_chunk(script: Script, model: str, parts: list[dict[str, Any]],
                    finish: str | None = None, *, with_usage: bool = False) -> dict[str, Any]:
    """One ``GenerateContentResponse`` carrying ``parts``."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    payload: dict[str, Any] = {"candidates": [candidate], "modelVersion": model,
                               "responseId": script.id}
    counts = usage(script)
    if with_usage and counts is not None:
        payload["usageMetadata"] = counts
    return payload


def _finish(script: Script) -> str:
    return script.finish_reason if script.finish_reason is not None else "STOP"


def response(script: Script, model: str) -> dict[str, Any]:
    """The whole reply."""
    parts: list[dict[str, Any]] = []
    if script.reasoning:
        parts.append({"text": script.reasoning, "thought": True})
    text = "".join(script.reply_pieces())
    if text:
        parts.append({"text": text})
    calls = [_call_part(call) for call in script.tool_calls or ()]
    parts += calls
    if script.reasoning and parts:
        (calls[0] if calls else parts[-1])["thoughtSignature"] = script.signature
    return candidate_chunk(script, model, parts, _finish(script), with_usage=True)


def pieces(script: Script, model: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A stream: the paced chunks, and the last one (finish reason and usage)."""
    chunks = [candidate_chunk(script, model, [{"text": piece, "thought": True}])
              for piece in script.reasoning_pieces()]
    chunks += [candidate_chunk(script, model, [{"text": piece}])
               for piece in script.reply_pieces()]
    calls = [_call_part(call) for call in script.tool_calls or ()]
    if script.reasoning and calls:
        calls[0]["thoughtSignature"] = script.signature
    chunks += [candidate_chunk(script, model, [part]) for part in calls]
    last_parts: list[dict[str, Any]] = []
    if script.reasoning and not calls:
        last_parts.append({"text": "", "thoughtSignature": script.signature})
    return chunks, candidate_chunk(script, model, last_parts, _finish(script),
                                   with_usage=True)


def model_page(models: list[str], size: int, token: str | None) -> dict[str, Any]:
    """One page of ``GET /v1beta/models`` (``pageToken``: where the page starts);
    every third model supports only ``embedContent``, to be left out by clients."""
    start = int(token) if token and token.isdigit() else 0
    page = models[start:start + max(1, size)]
    entries = [{"name": f"models/{name}", "displayName": name,
                "supportedGenerationMethods": ["embedContent"] if name.startswith("embed")
                else ["generateContent", "countTokens"]} for name in page]
    payload: dict[str, Any] = {"models": entries}
    if start + len(page) < len(models):
        payload["nextPageToken"] = str(start + len(page))
    return payload
