"""The OpenAI wire format: request body, JSON reply, SSE chunks, completeness."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatplug import (
    AuthenticationError,
    ProviderResponseError,
    RateLimitError,
    StreamInterruptedError,
)
from chatplug.wire.openai import parse_chunk, parse_reply, request_body, stream_text


def sse(*payloads: object, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(text: str | None, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text} if text is not None else {},
                         "finish_reason": finish}]}


def test_request_body_leaves_out_unset_options() -> None:
    body = request_body("m", [{"role": "user", "content": "x"}], True,
                        temperature=0.2, top_p=None)
    assert body == {"model": "m", "messages": [{"role": "user", "content": "x"}],
                    "stream": True, "temperature": 0.2}


def test_parse_reply_reads_the_first_choice() -> None:
    reply = {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}
    assert parse_reply(reply) == "hi"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({}, "no choices"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"text": "legacy"}]}, "no message"),
        ({"choices": [{"message": {"content": 3}}]}, "not text"),
        ([1, 2], "not an object"),
        ({"error": {"message": "model overloaded"}}, "model overloaded"),
    ],
)
def test_parse_reply_rejects_what_the_format_does_not_promise(
    payload: object, fragment: str
) -> None:
    with pytest.raises(ProviderResponseError, match=fragment):
        parse_reply(payload)


def test_stream_yields_pieces_until_done() -> None:
    data = sse(delta(None), delta("Hel"), delta("lo"), delta(None, "stop"))
    assert list(stream_text([data])) == ["Hel", "lo"]


def test_stream_stops_reading_at_done() -> None:
    def chunks():
        yield sse(delta("a"))
        raise AssertionError("read past [DONE]")

    assert list(stream_text(chunks())) == ["a"]


def test_clean_end_after_a_finish_reason_is_complete() -> None:
    data = sse(delta("a"), delta(None, "stop"), done=False)
    assert list(stream_text([data])) == ["a"]


def test_clean_end_without_done_or_finish_raises_after_the_pieces() -> None:
    pieces: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        for piece in stream_text([sse(delta("a"), delta("bc"), done=False)]):
            pieces.append(piece)
    assert pieces == ["a", "bc"]
    assert info.value.received == 3


def test_a_cut_last_line_is_an_interruption_not_a_parse_error() -> None:
    data = sse(delta("a"), done=False) + b'data: {"choices": [{"delta": {"cont'
    with pytest.raises(StreamInterruptedError):
        list(stream_text([data]))


def test_error_event_raises_typed_errors() -> None:
    with pytest.raises(ProviderResponseError, match="upstream exploded"):
        list(stream_text([sse(delta("a"), {"error": {"message": "upstream exploded"}})]))
    with pytest.raises(RateLimitError):
        list(stream_text([sse({"error": {"message": "slow", "code": "rate_limit_exceeded"}})]))
    with pytest.raises(AuthenticationError):
        list(stream_text([sse({"error": {"message": "no", "code": "invalid_api_key"}})]))


def test_chunks_without_choices_are_skipped() -> None:
    data = sse({"choices": [], "prompt_filter_results": []}, delta("x"),
               {"usage": {"total_tokens": 3}, "choices": []}, delta(None, "stop"))
    assert list(stream_text([data])) == ["x"]


@pytest.mark.parametrize("data", ["not json", "[1]", '{"choices": ["x"]}',
                                  '{"choices": [{"delta": {"content": 5}}]}', "[" * 100_000])
def test_bad_chunks_raise_provider_response_error(data: str) -> None:
    with pytest.raises(ProviderResponseError):
        parse_chunk(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_property_any_bytes_parse_or_raise_a_chatplug_error(data: bytes) -> None:
    try:
        for piece in stream_text([data]):
            assert isinstance(piece, str)
    except (ProviderResponseError, StreamInterruptedError):
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=10),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30))
def test_property_any_split_gives_the_same_pieces(texts: list[str], sizes: list[int]) -> None:
    data = sse(*(delta(t) for t in texts))
    chunks, position = [], 0
    for size in sizes:
        chunks.append(data[position:position + size])
        position += size
    chunks.append(data[position:])
    assert list(stream_text(chunks)) == texts
