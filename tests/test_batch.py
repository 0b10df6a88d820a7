"""``chatplug batch`` and ``chatplug.batch.run_batch``: real HTTP to the scripted server,
real ``chatplug batch`` processes, real signals."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import re
import selectors
import shlex
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chatplug import Registry, hookimpl
from chatplug.batch import (
    BatchFileError,
    BatchSummary,
    BatchValidationError,
    Progress,
    run_batch,
)
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

from .conftest import BIN, PLANTED_KEY, ROOT, default_sigint, free_port, run_cli

PROMPT = "question {}"


def request_line(index: int, model: str | None = "GravityEngine", **body: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"messages": [{"role": "user", "content": PROMPT.format(index)}]}
    if model is not None:
        fields["model"] = model
    fields.update(body)
    return {"custom_id": f"req-{index}", "method": "POST", "url": "/v1/chat/completions",
            "body": fields}


def write_input(path: Path, count: int, **body: Any) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps(request_line(index, **body)) + "\n")
    return path


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ids_of(path: Path) -> Counter[str]:
    return Counter(record["custom_id"] for record in results(path))


def env_for(server: ScriptedServer, **extra: str) -> dict[str, str]:
    return {"CHATPLUG_GRAVITYENGINE_URL": server.url,
            "CHATPLUG_OPENAI_URL": server.url + "/v1", **extra}


def batch(*args: str | Path, server: ScriptedServer, timeout: float = 60,
          **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("batch", *map(str, args), env=env_for(server, **env), timeout=timeout)


def posts(server: ScriptedServer) -> list[Any]:
    return [r.json for r in server.requests if r.method == "POST"]


def popen_batch(*args: str | Path, server: ScriptedServer, **env: str) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith("CHATPLUG_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    full.update(env_for(server, **env))
    return subprocess.Popen([str(BIN / "chatplug"), "batch", *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=full, preexec_fn=default_sigint)


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[bytes],
                   timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        assert process.poll() is None, "the batch ended before it was to be stopped"
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {count} lines in {timeout} s")


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed and reaped if the test did not end them."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


# -- output -----------------------------------------------------------------------------


def test_each_result_is_a_line_of_openais_batch_output(chatplug_server: ScriptedServer,
                                                      tmp_path: Path) -> None:
    source = write_input(tmp_path / "requests.jsonl", 5, temperature=0.25)
    output = tmp_path / "results.jsonl"
    result = batch(source, "-o", output, server=chatplug_server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    records = results(output)
    assert sorted(r["custom_id"] for r in records) == [f"req-{i}" for i in range(5)]
    for record in records:
        index = int(record["custom_id"].split("-")[1])
        assert set(record) == {"id", "custom_id", "response", "error"}
        assert record["error"] is None
        assert record["id"].startswith("batch_req_")
        response = record["response"]
        assert response["status_code"] == 200
        assert record["id"] == f"batch_req_{response['request_id']}"
        body = response["body"]
        assert body["object"] == "chat.completion"
        assert body["model"] == "gpt-3.5-turbo-16k"
        choice = body["choices"][0]
        assert choice["message"] == {"role": "assistant", "content": f"You said: question {index}"}
        assert choice["finish_reason"] == "stop"
        assert "usage" in body
    sent = posts(chatplug_server)
    assert len(sent) == 5
    assert {body["temperature"] for body in sent} == {0.25}
    assert {body["model"] for body in sent} == {"gpt-3.5-turbo-16k"}
    assert "5 succeeded, 0 failed, 0 skipped" in result.stderr


def test_model_field_and_defaults_pick_the_provider(chatplug_server: ScriptedServer,
                                                    tmp_path: Path) -> None:
    source = tmp_path / "requests.jsonl"
    lines = [request_line(0, model="GravityEngine/gpt-3.5-turbo-0613"),
             request_line(1, model=None),
             request_line(2, model="gpt-4o-mini"),   # a bare model: one of -p's provider
             request_line(3, model="OpenAI/meta-llama/Llama-3")]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = batch(source, "-o", tmp_path / "out.jsonl", "-p", "OpenAI", "-m", "gpt-4o",
                   server=chatplug_server, CHATPLUG_OPENAI_API_KEY=PLANTED_KEY)
    assert result.returncode == 0, result.stderr
    by_prompt = {body["messages"][0]["content"]: body["model"] for body in posts(chatplug_server)}
    assert by_prompt == {"question 0": "gpt-3.5-turbo-0613", "question 1": "gpt-4o",
                         "question 2": "gpt-4o-mini", "question 3": "meta-llama/Llama-3"}
    openai = [r for r in chatplug_server.requests if r.path.startswith("/v1/chat/")]
    assert len(openai) == 3


def test_a_failed_request_is_an_error_line_and_the_run_goes_on(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    source = write_input(tmp_path / "requests.jsonl", 4)
    chatplug_server.add(status=503, text="overloaded")  # the first request, with concurrency 1
    output = tmp_path / "out.jsonl"
    result = batch(source, "-o", output, "--concurrency", "1", server=chatplug_server,
                   CHATPLUG_MAX_RETRIES="0")
    assert result.returncode == 0, result.stderr  # every line got a result
    first, *rest = results(output)
    assert first["custom_id"] == "req-0"
    assert first["response"] is None
    assert first["error"]["code"] == "upstream_http_error"
    assert "503 Service Unavailable" in first["error"]["message"]
    assert [r["error"] for r in rest] == [None, None, None]
    assert "3 succeeded, 1 failed" in result.stderr


def test_no_key_in_the_output_or_on_stderr(chatplug_server: ScriptedServer,
                                           tmp_path: Path) -> None:
    source = write_input(tmp_path / "requests.jsonl", 3, model="OpenAI/gpt-4o-mini")
    chatplug_server.add(status=401, text="bad key", echo_key=True)
    output = tmp_path / "out.jsonl"
    result = batch(source, "-o", output, "--concurrency", "1", server=chatplug_server,
                   CHATPLUG_OPENAI_API_KEY=PLANTED_KEY)
    assert result.returncode == 0, result.stderr
    assert chatplug_server.requests[0].headers["Authorization"] == f"Bearer {PLANTED_KEY}"
    errors = [r["error"] for r in results(output) if r["error"]]
    assert [e["code"] for e in errors] == ["authentication_error"]
    assert "you sent Authorization" in errors[0]["message"]  # the echo, with the key masked
    assert PLANTED_KEY not in output.read_text()
    assert PLANTED_KEY not in result.stderr + result.stdout


class Metered:
    """A provider whose server reports token counts: the OpenAI wire, then usage."""

    model: ClassVar[list[str]] = ["metered-1"]
    supports_stream = True
    needs_auth = False

    def __init__(self, url: str) -> None:
        self.url = url

    @hookimpl
    def create_completion(self, model: str, messages: list[Any], stream: bool, url: str,
                          http: Any) -> Iterator[Any]:
        from chatplug.events import Usage
        from chatplug.wire import openai

        yield from openai.chat(http, f"{url}/v1/chat/completions", model=model,
                               messages=messages, stream=stream)
        yield Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)


def test_tokens_are_summed_from_the_reported_usage(chatplug_server: ScriptedServer,
                                                   tmp_path: Path) -> None:
    registry = registry_for(chatplug_server)
    registry.register(Metered(chatplug_server.url), "Metered")
    source = write_input(tmp_path / "requests.jsonl", 5, model="Metered")
    output = tmp_path / "out.jsonl"
    try:
        summary = run_batch(source, output, registry=registry, progress=False)
    finally:
        registry.close()
    assert (summary.succeeded, summary.total_tokens) == (5, 35)
    for record in results(output):
        assert record["response"]["body"]["usage"] == {
            "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert "35 tokens" in str(summary)


# -- validation ----------------------------------------------------------------------------


def test_every_invalid_line_is_reported_with_its_number_and_nothing_is_sent(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    good = json.dumps(request_line(0))
    lines = [
        good,                                                            # 1
        "{not json",                                                     # 2
        json.dumps({"method": "POST", "body": {}}),                      # 3 no custom_id
        json.dumps(request_line(0)),                                     # 4 duplicate
        json.dumps({**request_line(4), "url": "/v1/embeddings"}),        # 5
        json.dumps(request_line(5, temperature=7)),                      # 6 out of range
        json.dumps(request_line(6, model="Nowhere")),                    # 7
        "",                                                              # 8 blank: ignored
        json.dumps(request_line(8, model="GravityEngine/gpt-5")),        # 9
        json.dumps({"custom_id": "req-9", "body": {"model": "GravityEngine",
                                                   "messages": []}}),    # 10
        json.dumps(request_line(10, colour="red")),                      # 11 unknown param
        json.dumps(request_line(11, url="http://elsewhere")),            # 12 call option
        json.dumps(request_line(12, model="OpenAI/gpt-4o")),             # 13 no key
        json.dumps(request_line(13)),                                    # 14
    ]
    source = tmp_path / "requests.jsonl"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out.jsonl"
    result = batch(source, "-o", output, server=chatplug_server)
    assert result.returncode == 2
    # No request was sent (a bare model name asked the servers for their model lists).
    assert [r for r in chatplug_server.requests if r.method == "POST"] == []
    assert not output.exists()
    head, *reported = result.stderr.splitlines()
    assert head.startswith(f"chatplug: error: {source}: 11 of 13 lines are invalid; "
                           "nothing was sent.")
    numbers = [int(line.split(":")[0].split()[1]) for line in reported]
    assert numbers == [2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]
    text = "\n".join(reported)
    for fragment in ("not valid JSON", "custom_id is missing", "already used on line 1",
                     "url '/v1/embeddings' is not supported", "temperature=7 is invalid",
                     "alias or model named 'Nowhere'", "model 'gpt-5' is not supported",
                     "messages is empty", "unknown parameter 'colour'",
                     "body.url is a chatplug call option", "Set CHATPLUG_OPENAI_API_KEY"):
        assert fragment in text, fragment
    assert "Traceback" not in result.stderr


def test_skip_invalid_writes_invalid_lines_as_errors_and_runs_the_rest(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    source = tmp_path / "requests.jsonl"
    source.write_text("\n".join([json.dumps(request_line(0)), "[1, 2]",
                                 json.dumps(request_line(1, temperature=7)),
                                 json.dumps(request_line(2))]) + "\n")
    output = tmp_path / "out.jsonl"
    result = batch(source, "-o", output, "--skip-invalid", server=chatplug_server)
    assert result.returncode == 0, result.stderr  # every line has a result
    assert "line 2: the line is JSON but not an object (list)" in result.stderr
    assert "(written as an error, custom_id null)" in result.stderr
    assert "line 3:" in result.stderr
    assert "(written as an error)" in result.stderr
    records = {r["custom_id"]: r for r in results(output)}
    assert set(records) == {"req-0", "req-1", "req-2", None}
    assert records["req-1"]["error"]["code"] == "invalid_request"
    assert "temperature=7" in records["req-1"]["error"]["message"]
    assert records[None]["error"]["line"] == 2
    assert len(posts(chatplug_server)) == 2


def test_skip_invalid_writes_a_torn_line_as_an_error_with_its_number_once(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    source = tmp_path / "requests.jsonl"
    torn = json.dumps(request_line(1))[:25]
    source.write_text("\n".join([json.dumps(request_line(0)), torn,
                                 json.dumps(request_line(2))]) + "\n")
    output = tmp_path / "out.jsonl"
    result = batch(source, "-o", output, "--skip-invalid", server=chatplug_server)
    assert result.returncode == 0, result.stderr
    assert "line 2: the line is not valid JSON" in result.stderr
    errors = [r for r in results(output) if r["custom_id"] is None]
    assert len(errors) == 1
    assert errors[0]["response"] is None
    assert errors[0]["error"]["line"] == 2
    assert errors[0]["error"]["code"] == "invalid_request"
    assert "not valid JSON" in errors[0]["error"]["message"]
    # Resumed: nothing is sent again, and the torn line still has exactly one error line.
    again = batch(source, "-o", output, "--skip-invalid", server=chatplug_server)
    assert again.returncode == 0, again.stderr
    assert "discarded" not in again.stderr
    assert [r["custom_id"] for r in results(output)].count(None) == 1
    assert len(results(output)) == 3
    assert len(posts(chatplug_server)) == 2


def test_run_batch_raises_with_every_problem(chatplug_registry: Registry,
                                             tmp_path: Path) -> None:
    source = tmp_path / "requests.jsonl"
    source.write_text(json.dumps(request_line(0, top_k=3)) + "\n" + "{}\n")
    with pytest.raises(BatchValidationError) as caught:
        run_batch(source, tmp_path / "out.jsonl", registry=chatplug_registry, progress=False)
    problems = caught.value.problems
    assert [(p.line, p.custom_id, p.code) for p in problems] == [
        (1, "req-0", "invalid_request"), (2, None, "invalid_request")]
    assert caught.value.code == "invalid_batch"
    with pytest.raises(BatchFileError, match="cannot read the batch input"):
        run_batch(tmp_path / "missing.jsonl", tmp_path / "out.jsonl",
                  registry=chatplug_registry, progress=False)
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(BatchFileError, match="is the input file"):
        run_batch(source, source, registry=chatplug_registry, progress=False)


# -- resuming ----------------------------------------------------------------------------


def test_a_rerun_skips_what_is_answered_and_sends_the_rest(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    source = write_input(tmp_path / "requests.jsonl", 6)
    output = tmp_path / "out.jsonl"
    assert batch(source, "-o", output, server=chatplug_server).returncode == 0
    again = batch(source, "-o", output, "--quiet", server=chatplug_server)
    assert again.returncode == 0
    assert again.stderr == ("chatplug batch: 0 succeeded, 0 failed, 6 skipped (already "
                            "answered), 0 tokens, " + again.stderr.rsplit(", ", 1)[1])
    assert len(posts(chatplug_server)) == 6
    write_input(source, 10)
    more = batch(source, "-o", output, server=chatplug_server)
    assert "4 succeeded, 0 failed, 6 skipped" in more.stderr
    sent = [body["messages"][0]["content"] for body in posts(chatplug_server)[6:]]
    assert sorted(sent) == [PROMPT.format(i) for i in range(6, 10)]
    assert ids_of(output) == Counter(f"req-{i}" for i in range(10))


def test_retry_errors_sends_failed_requests_again_and_replaces_their_lines(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    source = write_input(tmp_path / "requests.jsonl", 6)
    output = tmp_path / "out.jsonl"
    for _ in range(2):
        chatplug_server.add(status=500, text="boom")
    first = batch(source, "-o", output, "--concurrency", "1", server=chatplug_server,
                  CHATPLUG_MAX_RETRIES="0")
    assert "4 succeeded, 2 failed" in first.stderr
    failed = {r["custom_id"] for r in results(output) if r["error"]}
    assert failed == {"req-0", "req-1"}
    plain = batch(source, "-o", output, server=chatplug_server)  # errors count as answered
    assert "6 skipped" in plain.stderr
    assert len(posts(chatplug_server)) == 6
    retried = batch(source, "-o", output, "--retry-errors", server=chatplug_server)
    assert retried.returncode == 0, retried.stderr
    assert "2 succeeded, 0 failed, 4 skipped" in retried.stderr
    assert "2 error lines replaced" in retried.stderr
    assert sorted(b["messages"][0]["content"] for b in posts(chatplug_server)[6:]) == [
        "question 0", "question 1"]
    assert ids_of(output) == Counter(f"req-{i}" for i in range(6))
    assert all(r["error"] is None for r in results(output))


def test_a_torn_last_line_is_discarded_and_its_request_sent_again(
        chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    source = write_input(tmp_path / "requests.jsonl", 4)
    output = tmp_path / "out.jsonl"
    assert batch(source, "-o", output, server=chatplug_server).returncode == 0
    data = output.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    torn_id = json.loads(data[last_start:])["custom_id"]
    output.write_bytes(data[:last_start + 40])  # a crash in the middle of the last write
    result = batch(source, "-o", output, server=chatplug_server)
    assert result.returncode == 0, result.stderr
    assert "1 succeeded, 0 failed, 3 skipped" in result.stderr
    assert "1 torn or unreadable output lines discarded" in result.stderr
    assert posts(chatplug_server)[-1]["messages"][0]["content"] == PROMPT.format(
        torn_id.split("-")[1])
    assert output.read_bytes().endswith(b"\n")
    assert ids_of(output) == Counter(f"req-{i}" for i in range(4))


def test_sigkill_mid_run_then_a_rerun_answers_each_custom_id_exactly_once(
        chatplug_server: ScriptedServer, tmp_path: Path,
        stopped: list[subprocess.Popen[bytes]]) -> None:
    count = 80
    source = write_input(tmp_path / "requests.jsonl", count)
    output = tmp_path / "out.jsonl"
    for _ in range(count):
        chatplug_server.add(delay=0.02, text="slow answer")
    process = popen_batch(source, "-o", output, "--concurrency", "4", server=chatplug_server)
    stopped.append(process)
    wait_for_lines(output, 10, process)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    written = ids_of(output)
    assert 10 <= sum(written.values()) < count
    assert set(written.values()) == {1}
    rerun = batch(source, "-o", output, server=chatplug_server)
    assert rerun.returncode == 0, rerun.stderr
    assert ids_of(output) == Counter(f"req-{i}" for i in range(count))
    assert len(posts(chatplug_server)) >= count


def test_ctrl_c_cancels_requests_in_flight_exits_130_and_the_rerun_resumes(
        chatplug_server: ScriptedServer, tmp_path: Path,
        stopped: list[subprocess.Popen[bytes]]) -> None:
    count = 12
    source = write_input(tmp_path / "requests.jsonl", count)
    output = tmp_path / "out.jsonl"
    for index in range(count):
        # Three quick answers, then requests the server holds far longer than the test.
        chatplug_server.add(delay=0.0 if index < 3 else 60.0)
    process = popen_batch(source, "-o", output, "--concurrency", "3", server=chatplug_server)
    stopped.append(process)
    assert process.stderr is not None
    # The plain progress line (stderr is a pipe): what is to be done, then every 5 s.
    lines = read_lines_until(process.stderr, "done,", timeout=20)
    assert lines[0] == f"chatplug batch: {count} requests to send"
    assert lines[-1].startswith("chatplug batch: 3/12 done, 0 errors, ")
    assert "ETA" in lines[-1]
    assert len(ids_of(output)) == 3
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130
    assert time.monotonic() - interrupted < 3.0  # in flight ended within 2 s, then exit
    stderr = process.stderr.read().decode()
    assert "3 succeeded, 0 failed, 0 skipped (already answered), 9 not sent" in stderr
    assert "interrupted; run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    # Cut requests are not written: only the three quick answers, once each.  Which three
    # lines got them depends on which requests reached the server first (a reused
    # connection can overtake a new one), so the test does not name them.
    answered = ids_of(output)
    assert len(answered) == 3
    assert set(answered.values()) == {1}
    with ScriptedServer(lifetime=60) as fresh:
        rerun = batch(source, "-o", output, server=fresh)
        assert rerun.returncode == 0, rerun.stderr
        assert "9 succeeded, 0 failed, 3 skipped" in rerun.stderr
        assert len(posts(fresh)) == 9
    assert ids_of(output) == Counter(f"req-{i}" for i in range(count))


def read_lines_until(stream: Any, fragment: str, timeout: float) -> list[str]:
    """Lines read from a pipe until one contains ``fragment``."""
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(0.2):
                continue
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"stderr closed; got {lines!r}"
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                lines.append(line.decode())
                if fragment in lines[-1]:
                    return lines
    raise AssertionError(f"no line with {fragment!r} in {timeout} s; got {lines!r}")


def test_a_second_run_on_the_same_output_is_refused(chatplug_server: ScriptedServer,
                                                    tmp_path: Path,
                                                    stopped: list[subprocess.Popen[bytes]]
                                                    ) -> None:
    source = write_input(tmp_path / "requests.jsonl", 3)
    output = tmp_path / "out.jsonl"
    for _ in range(3):
        chatplug_server.add(delay=60.0)
    process = popen_batch(source, "-o", output, server=chatplug_server)
    stopped.append(process)
    deadline = time.monotonic() + 20
    while len(chatplug_server.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    second = batch(source, "-o", output, server=chatplug_server)
    assert second.returncode == 1
    assert "is being written by another chatplug batch run" in second.stderr
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130


# -- rate, concurrency, progress ---------------------------------------------------------


class RequestClock:
    """An observer noting when each request starts."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self._lock = threading.Lock()

    @hookimpl
    def chatplug_on_request(self, provider: str, model: str, stream: bool, request_id: str,
                            route: str | None) -> None:
        with self._lock:
            self.starts.append(time.monotonic())


def test_qps_limits_the_rate_across_all_workers(chatplug_server: ScriptedServer,
                                                 tmp_path: Path) -> None:
    registry = registry_for(chatplug_server)
    clock = RequestClock()
    registry.register_observer(clock, "clock")
    source = write_input(tmp_path / "requests.jsonl", 12)
    try:
        summary = run_batch(source, tmp_path / "out.jsonl", concurrency=6, qps=10,
                            registry=registry, progress=False)
    finally:
        assert registry.flush_observers(5)
        registry.close()
    assert summary.succeeded == 12
    starts = sorted(clock.starts)
    assert len(starts) == 12
    # Evenly spaced at 10/s: 12 starts span at least 1.1 s (some slack for the clock)...
    assert starts[-1] - starts[0] >= 1.0
    # ...and no second holds more than qps + 1 of them, whatever the scheduling.
    assert max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts) <= 11
    assert summary.duration_s < 10


def test_concurrency_64_keeps_within_the_connection_pool(
        chatplug_server: ScriptedServer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    registry = registry_for(chatplug_server)
    source = write_input(tmp_path / "requests.jsonl", 256)
    for _ in range(256):
        chatplug_server.add(delay=0.01, text="pooled")
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    try:
        summary = run_batch(source, tmp_path / "out.jsonl", concurrency=64, registry=registry,
                            progress=False)
    finally:
        registry.close()
    assert (summary.succeeded, summary.failed) == (256, 0)
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    opened = [r for r in caplog.records if "Starting new HTTP connection" in r.getMessage()]
    assert len(opened) <= 64


def test_run_batch_reports_progress_to_a_callable(no_threads_left: None,
                                                  chatplug_registry: Registry,
                                                  tmp_path: Path) -> None:
    source = write_input(tmp_path / "requests.jsonl", 5)
    seen: list[Progress] = []
    summary = run_batch(source, tmp_path / "out.jsonl", registry=chatplug_registry,
                        progress=seen.append)
    assert isinstance(summary, BatchSummary)
    assert (summary.succeeded, summary.failed, summary.skipped, summary.total_tokens) == (
        5, 0, 0, 0)
    assert summary.duration_s > 0
    assert summary.complete
    assert seen[-1].done == seen[-1].total == 5
    again = run_batch(source, tmp_path / "out.jsonl", registry=chatplug_registry,
                      progress=False)
    assert (again.succeeded, again.skipped) == (0, 5)


def test_a_progress_bar_when_stderr_is_a_terminal(chatplug_server: ScriptedServer,
                                                  tmp_path: Path) -> None:
    source = write_input(tmp_path / "requests.jsonl", 8)
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    full = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    full.update(env_for(chatplug_server))
    try:
        process = subprocess.Popen(
            [str(BIN / "chatplug"), "batch", str(source), "-o", str(tmp_path / "out.jsonl")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=secondary, env=full)
        os.close(secondary)
        screen = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal's other side closed: the process is done
                break
            if not chunk:
                break
            screen += chunk
        assert process.wait(timeout=30) == 0
    finally:
        os.close(primary)
    text = screen.decode(errors="replace")
    assert "chatplug batch: 100%" in text
    assert "8/8" in text
    assert "req/s" in text
    assert "0 errors" in text
    assert "8 succeeded, 0 failed" in text


def test_usage_and_bad_arguments(tmp_path: Path) -> None:
    help_text = run_cli("batch", "--help")
    assert help_text.returncode == 0
    for option in ("--concurrency", "--qps", "--skip-invalid", "--retry-errors", "--quiet"):
        assert option in help_text.stdout
    assert run_cli("batch", "in.jsonl").returncode == 2  # no -o
    assert run_cli("batch", "in.jsonl", "-o", "o", "--concurrency", "0").returncode == 2
    assert run_cli("batch", "in.jsonl", "-o", "o", "--qps", "-1").returncode == 2
    missing = run_cli("batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl"),
                      env={"CHATPLUG_GRAVITYENGINE_URL": f"http://127.0.0.1:{free_port()}"})
    assert missing.returncode == 1
    assert missing.stderr.startswith("chatplug: error: cannot read the batch input")
    assert not (tmp_path / "o.jsonl").exists()


# -- docs/scaling.md ---------------------------------------------------------------------

SCALING = ROOT / "docs" / "scaling.md"
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def doc_blocks(language: str) -> list[str]:
    text = SCALING.read_text(encoding="utf-8")
    return [m.group(2) for m in FENCE.finditer(text) if m.group(1) == language]


def shape(value: Any) -> Any:
    """The keys of nested objects, for comparing a real line with the documented one."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    return None


def test_the_documented_batch_runs_as_documented(chatplug_server: ScriptedServer,
                                                 tmp_path: Path) -> None:
    requests, documented = doc_blocks("jsonl")
    (tmp_path / "requests.jsonl").write_text(requests)
    command = shlex.split(doc_blocks("bash")[0].strip())
    assert command[:2] == ["chatplug", "batch"]
    result = run_cli(*command[1:], env=env_for(chatplug_server))  # in tmp_path, the cwd
    assert result.returncode == 0, result.stderr
    real = {r["custom_id"]: r for r in results(tmp_path / "results.jsonl")}
    example = [json.loads(line) for line in documented.splitlines()]
    assert set(real) == {r["custom_id"] for r in example}
    success = next(r for r in example if r["error"] is None)
    body = dict(success["response"]["body"], usage=None)  # the scripted server reports none
    assert shape(real[success["custom_id"]]) == shape({**success,
                                                       "response": {**success["response"],
                                                                    "body": body}})
    failure = next(r for r in example if r["error"] is not None)
    assert set(failure["error"]) == {"code", "message"}
    sent = {b["messages"][0]["content"]: (b["model"], b["temperature"])
            for b in posts(chatplug_server)}
    assert sent == {"Name a prime.": ("gpt-3.5-turbo-16k", 0.7),  # GravityEngine's default
                    "Name a colour.": ("gpt-3.5-turbo-0613", 0.2)}

    (tmp_path / "results.jsonl").unlink()
    script = next(block for block in doc_blocks("python") if "run_batch" in block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env.update(env_for(chatplug_server))
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("2 0 0 0 ")
