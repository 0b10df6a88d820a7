"""The SSE decoder, on bytes: line endings, splits across reads, UTF-8, fields."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatplug.wire.sse import LineSplitter, ServerSentEvent, SSEDecoder, iter_events


def events_of(chunks: list[bytes]) -> list[ServerSentEvent]:
    return list(iter_events(chunks))


def all_splits(data: bytes) -> list[list[bytes]]:
    """Every way of cutting ``data`` into two reads, plus one byte per read."""
    cuts = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    return [*cuts, [data[i:i + 1] for i in range(len(data))]]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_ending_separates_events(newline: str) -> None:
    stream = f"data: one{newline}{newline}data: two{newline}{newline}".encode()
    assert [e.data for e in events_of([stream])] == ["one", "two"]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_any_split_point_gives_the_same_events(newline: str) -> None:
    text = f": hi{newline}data: a{newline}data: b{newline}{newline}data: [DONE]{newline}{newline}"
    data = text.encode()
    expected = events_of([data])
    assert [e.data for e in expected] == ["a\nb", "[DONE]"]
    for chunks in all_splits(data):
        assert events_of(chunks) == expected


def test_crlf_split_between_reads_is_one_line_break() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    # The LF completing the CRLF must not count as a blank (dispatching) line...
    assert decoder.feed(b"\ndata: y\r\n") == []
    # ...only the real blank line does.
    assert [e.data for e in decoder.feed(b"\r\n")] == ["x\ny"]


def test_a_line_is_handed_on_as_soon_as_its_terminator_arrives() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"data: a") == []
    assert splitter.feed(b"bc\r") == [b"data: abc"]  # a lone CR is not held back
    assert splitter.feed(b"\n") == []


def test_multibyte_utf8_split_across_reads() -> None:
    data = 'data: {"t": "Привет ✓ 🎉"}\n\n'.encode()
    for chunks in all_splits(data):
        assert [e.data for e in events_of(chunks)] == ['{"t": "Привет ✓ 🎉"}']


def test_utf8_is_used_whatever_charset_is_claimed_and_bad_bytes_are_replaced() -> None:
    assert events_of([b"data: caf\xc3\xa9\n\n"])[0].data == "café"
    assert events_of([b"data: bad\xff\n\n"])[0].data == "bad\ufffd"


def test_comments_fields_and_multiline_data() -> None:
    stream = (
        b": keep-alive\n"
        b"event: delta\nid: 7\nretry: 1500\ndata: first\ndata:second\ndata\n\n"
        b"unknown: ignored\ndata: next\n\n"
    )
    first, second = events_of([stream])
    assert first == ServerSentEvent(data="first\nsecond\n", event="delta", id="7", retry=1500)
    assert second.data == "next"
    assert second.event == "message"
    assert second.id == "7"  # the last event id persists


def test_a_non_ascii_digit_in_retry_is_ignored_as_the_spec_says() -> None:
    [event] = events_of([b"retry: \xc2\xb2\ndata: x\n\n"])  # "retry: ²"
    assert (event.data, event.retry) == ("x", None)


def test_comment_only_and_empty_events_dispatch_nothing() -> None:
    assert events_of([b": ping\n\n\n\nevent: x\n\n"]) == []


def test_clean_end_dispatches_complete_lines_but_drops_a_cut_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: whole\n") == []
    assert [e.data for e in decoder.end()] == ["whole"]
    cut = SSEDecoder()
    cut.feed(b"data: {\"choi")
    assert cut.cut_line
    assert cut.end() == []


chunk_lists = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(min_size=0, max_size=30).filter(lambda t: "\r" not in t
                                                       and "\n" not in t), max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    sizes=chunk_lists,
)
def test_property_any_split_of_a_valid_stream_gives_the_same_events(
    texts: list[str], newline: str, sizes: list[int]
) -> None:
    data = "".join(f"data: {t}{newline}{newline}" for t in texts).encode()
    chunks, position = [], 0
    for size in sizes:
        chunks.append(data[position:position + size])
        position += size
    chunks.append(data[position:])
    assert [e.data for e in events_of(chunks)] == texts


field_lines = st.sampled_from([
    "data: x", "data: два", "data:", "data", "event: delta", "id: 7", "retry: 10", ": note",
    "", "", "bogus: 1",
])


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(field_lines, max_size=30), newline=st.sampled_from(["\n", "\r\n"]),
       sizes=chunk_lists)
def test_property_fields_in_any_split_give_what_one_read_gives(
    lines: list[str], newline: str, sizes: list[int]
) -> None:
    data = "".join(line + newline for line in lines).encode()
    chunks, position = [], 0
    for size in sizes:
        chunks.append(data[position:position + size])
        position += size
    chunks.append(data[position:])
    assert events_of(chunks) == events_of([data])
    # The data-only fast path agrees with the full decoder, however the bytes are split.
    expected = [event.data for event in events_of([data])]
    for split in (chunks, [data], [data[i:i + 1] for i in range(len(data))]):
        decoder = SSEDecoder()
        found = [d for part in split for d in decoder.feed_data(part)]
        found += [event.data for event in decoder.end()]
        assert found == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_property_any_bytes_decode_without_raising(chunks: list[bytes]) -> None:
    for event in events_of(chunks):
        assert isinstance(event.data, str)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(field_lines, max_size=30), cut=st.sampled_from(["", "data: {\"cut", "da"]),
       sizes=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=20))
def test_property_bulk_reads_with_a_cut_end_give_what_feed_gives(
    lines: list[str], cut: str, sizes: list[int]
) -> None:
    # Reads that end anywhere inside an event (as bulk reads do), and a last line cut in
    # transit: the data, the cut and what a clean end dispatches are those of feed().
    data = ("".join(line + "\n" for line in lines) + cut).encode()
    reference = SSEDecoder()
    expected = [event.data for event in reference.feed(data)]
    expected_cut = reference.cut_line
    if not expected_cut:
        expected += [event.data for event in reference.end()]
    decoder = SSEDecoder()
    found, position = [], 0
    for size in [*sizes, len(data)]:
        found += decoder.feed_data(data[position:position + size])
        position += size
    assert decoder.cut_line == expected_cut
    if not decoder.cut_line:
        found += [event.data for event in decoder.end()]
    assert found == expected


def test_an_event_longer_than_the_kept_bytes_goes_to_the_line_decoder() -> None:
    decoder = SSEDecoder()
    text = "x" * (200 * 1024)
    data = f"data: {text}\n\ndata: next\n\n".encode()
    found = []
    for start in range(0, len(data), 16 * 1024):
        found += decoder.feed_data(data[start:start + 16 * 1024])
    assert found == [text, "next"]


@pytest.mark.parametrize("stream", [
    b"event: content_block_delta\ndata: {\"a\": 1}\n\nevent: ping\ndata: {}\n\n",
    b"event: x\nid: 7\ndata: one\n\nevent: y\ndata: two\ndata: three\n\n",
    b"event: only-a-name\n\nevent: z\ndata: \n\ndata: plain\n\n",
])
def test_named_events_take_the_fast_path_with_the_full_decoders_result(stream: bytes) -> None:
    """Anthropic's grammar (a name line, then one data line) is read fast; anything else
    about a named event (an id, several data lines, no data) goes to the full decoder."""
    fast = SSEDecoder().feed_data(stream)
    full = [event.data for event in SSEDecoder().feed(stream)]
    assert fast == full
