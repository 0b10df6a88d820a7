"""``chatplug chat`` as a daily tool: the interactive chat on a real pseudo-terminal, continued
conversations, --json, --usage, notes, the waiting status and retry announcements, --timeout.
Every test runs the real ``chatplug`` command against a server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from chatplug.testing import ScriptedServer

from .conftest import BIN, run_cli
from .distributions import PROVIDER_GROUP, make_distribution
from .rawserver import RawServer, chunk, response_head, sleep_until_stopped
from .terminal import Terminal

CHATPLUG = str(BIN / "chatplug")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def env_for(server: ScriptedServer | RawServer, home: Path, **extra: str) -> dict[str, str]:
    """A terminal user's environment: chatplug's files in ``home``, providers at ``server``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATPLUG_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(CHATPLUG_HOME=str(home), CHATPLUG_GRAVITYENGINE_URL=server.url, TERM="dumb",
               LANG="C.UTF-8", LC_ALL="C.UTF-8", **extra)
    return env


def logged(home: Path, *args: str) -> list[dict[str, object]]:
    result = run_cli("logs", "--json", "-n", "0", *args, env={"CHATPLUG_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    records: list[dict[str, object]] = json.loads(result.stdout)
    return records


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


# -- the interactive chat --------------------------------------------------------------


def test_a_three_turn_conversation_sends_the_earlier_turns(
    chatplug_server: ScriptedServer, home: Path
) -> None:
    with Terminal([CHATPLUG, "chat"], env_for(chatplug_server, home)) as term:
        term.expect(r"chatting with GravityEngine \(gpt-3\.5-turbo-16k\)")
        for word in ("first", "second", "third"):
            mark = len(term.text)
            term.expect(r"> ", after=mark - 2 if mark else 0)
            term.send(f"{word}\r")
            term.expect(f"You said: {word}\n", after=mark)
        term.send("!exit\r")
        assert term.wait() == 0
    bodies = [r.json for r in chatplug_server.requests]
    assert [b["stream"] for b in bodies] == [True, True, True]
    assert bodies[2]["messages"] == [
        user("first"), assistant("You said: first"),
        user("second"), assistant("You said: second"),
        user("third")]
    rows = logged(home)
    assert [r["prompt"] for r in rows] == ["first", "second", "third"]
    assert len({r["conversation_id"] for r in rows}) == 1
    assert rows[2]["messages"] == bodies[2]["messages"]
    assert rows[2]["reply"] == "You said: third"


def _sse(text: str) -> bytes:
    payload = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(payload)}\n\n".encode()


def test_ctrl_c_stops_the_reply_and_the_chat_goes_on(home: Path) -> None:
    closed = threading.Event()
    stopped_at: list[float] = []

    def endless(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="text/event-stream",
                                   Transfer_Encoding="chunked") + chunk(_sse("first")))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                conn.sendall(chunk(_sse(" more")))
                if select.select([conn], [], [], 0.1)[0] and not conn.recv(1):
                    break  # the client closed the connection
            except OSError:
                break
        stopped_at.append(time.monotonic())
        closed.set()

    def whole(conn: socket.socket, request: bytes) -> None:
        body = chunk(_sse("You said: again")) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        conn.sendall(response_head(Content_Type="text/event-stream",
                                   Transfer_Encoding="chunked") + body)

    with RawServer() as server, Terminal([CHATPLUG, "chat"], env_for(server, home)) as term:
        server.then(endless).then(whole)
        term.expect("> ")
        term.send("go on forever\r")
        term.expect("first more more")
        pressed = time.monotonic()
        term.send("\x03")
        term.expect(r"stopped \(Ctrl-C\)")
        assert closed.wait(5), "the server never saw the connection closed"
        assert stopped_at[0] - pressed < 3
        mark = len(term.text)
        term.expect("> ", after=mark - 2)
        term.send("again\r")
        term.expect("You said: again\n> ", after=mark)
        # A person's pause: a SIGINT in the instant before readline waits for a key is
        # only seen at the next key (Python's readline, not chatplug).
        time.sleep(0.3)
        term.send("\x03")  # at the prompt: leaves
        assert term.wait() == 130
        second = json.loads(server.requests[1].partition(b"\r\n\r\n")[2])
    kept = second["messages"]
    assert [m["role"] for m in kept] == ["user", "assistant", "user"]
    assert kept[1]["content"].startswith("first more")  # what was shown before Ctrl-C
    assert kept[2] == user("again")
    rows = logged(home)
    assert [(r["prompt"], r["error_code"]) for r in rows] == [
        ("go on forever", "interrupted"), ("again", None)]


def test_multi_line_input_reset_and_ctrl_d(chatplug_server: ScriptedServer, home: Path) -> None:
    with Terminal([CHATPLUG, "chat", "-s", "Be brief."], env_for(chatplug_server, home)) as term:
        term.expect("> ")
        term.send("!multi\r")
        term.expect("… ")
        term.send("line one\r")
        term.send("line two\r")
        term.send("!end\r")
        term.expect("You said: line one\nline two\n")
        mark = len(term.text)
        term.send("!reset\r")
        term.expect("new conversation [0-9a-f]{12}", after=mark)
        term.send("!nonsense\r")
        term.expect("no command !nonsense. !multi: ", after=mark)
        term.send("fresh\r")
        term.expect("You said: fresh\n> ", after=mark)
        time.sleep(0.3)  # at the prompt, as a person is: control keys are not typed ahead
        term.send("\x04")  # Ctrl-D at the prompt
        assert term.wait() == 0
    first, second = (r.json["messages"] for r in chatplug_server.requests)
    assert first == [{"role": "system", "content": "Be brief."}, user("line one\nline two")]
    assert second == [{"role": "system", "content": "Be brief."}, user("fresh")]
    rows = logged(home)
    assert rows[0]["conversation_id"] != rows[1]["conversation_id"]
    assert rows[1]["system"] == "Be brief."


def test_piped_input_stays_one_shot(chatplug_server: ScriptedServer, home: Path) -> None:
    result = run_cli("chat", input="from a pipe\n", env=env_for(chatplug_server, home))
    assert (result.returncode, result.stdout, result.stderr) == (0, "You said: from a pipe\n", "")


# -- continuing logged conversations ---------------------------------------------------


def test_dash_c_continues_the_latest_conversation_and_cid_a_given_one(
    chatplug_server: ScriptedServer, home: Path
) -> None:
    env = env_for(chatplug_server, home)
    assert run_cli("chat", "-s", "Short.", "one", env=env).returncode == 0
    assert run_cli("chat", "-c", "two", env=env).stdout == "You said: two\n"
    assert chatplug_server.requests[-1].json["messages"] == [
        {"role": "system", "content": "Short."}, user("one"), assistant("You said: one"),
        user("two")]
    first_cid = logged(home)[0]["conversation_id"]
    assert run_cli("chat", "elsewhere", env=env).returncode == 0
    assert run_cli("chat", "--cid", str(first_cid), "three", env=env).returncode == 0
    assert [m["content"] for m in chatplug_server.requests[-1].json["messages"]] == [
        "Short.", "one", "You said: one", "two", "You said: two", "three"]
    rows = logged(home)
    assert [r["prompt"] for r in rows] == ["one", "two", "elsewhere", "three"]
    assert [r["conversation_id"] == first_cid for r in rows] == [True, True, False, True]
    assert run_cli("chat", "--cid", "nope", "x", env=env).returncode == 2
    both = run_cli("chat", "-c", "--cid", str(first_cid), "x", env=env)
    assert (both.returncode, "not both" in both.stderr) == (2, True)


def test_dash_c_with_nothing_logged_is_a_usage_error(
    chatplug_server: ScriptedServer, home: Path
) -> None:
    result = run_cli("chat", "-c", "hi", env=env_for(chatplug_server, home))
    assert result.returncode == 2
    assert "no conversation is logged yet" in result.stderr
    assert chatplug_server.requests == []


# -- --json, --usage and notes ---------------------------------------------------------

RICH = '''
from chatplug import hookimpl
from chatplug.events import Finish, Meta, ToolCallDelta, Usage
url = "http://127.0.0.1:9"
model = ["rich-1"]
supports_stream = True
needs_auth = False
supports_tools = True

@hookimpl
def create_completion(model, messages, stream, url, http, finish: str = "stop",
                      tool: bool = False):
    from chatplug.wire import openai
    yield Meta(id="resp-7", model="rich-1-served")
    yield from openai.chat(http, url + "/v1/chat/completions", model=model,
                           messages=messages, stream=stream)
    if tool:
        yield ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"q": 1}')
    yield Finish(finish)
    yield Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
'''


@pytest.fixture
def rich(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    make_distribution(site, "chatplug-rich", {"rich_provider": RICH},
                      {PROVIDER_GROUP: {"Rich": "rich_provider"}})
    return site


def test_json_prints_the_completion(chatplug_server: ScriptedServer, home: Path,
                                    rich: Path) -> None:
    env = env_for(chatplug_server, home, PYTHONPATH=str(rich),
                  CHATPLUG_RICH_URL=chatplug_server.url)
    result = run_cli("chat", "-p", "Rich", "--json", "hello", env=env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["text"] == "You said: hello"
    assert (payload["finish_reason"], payload["id"], payload["model"], payload["provider"]) == (
        "stop", "resp-7", "rich-1-served", "Rich")
    assert payload["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert payload["message"] == assistant("You said: hello")
    assert payload["conversation_id"] == logged(home)[0]["conversation_id"]
    assert chatplug_server.requests[-1].json["stream"] is False
    assert result.stderr == ""


def test_usage_and_finish_reason_notes_go_to_stderr(
    chatplug_server: ScriptedServer, home: Path, rich: Path
) -> None:
    env = env_for(chatplug_server, home, PYTHONPATH=str(rich),
                  CHATPLUG_RICH_URL=chatplug_server.url)
    cut = run_cli("chat", "-p", "Rich", "--usage", "-o", "finish=length", "hi", env=env)
    assert (cut.returncode, cut.stdout) == (0, "You said: hi\n")
    assert cut.stderr.splitlines() == [
        "chatplug: note: the reply was cut at the token limit (finish_reason length); ask "
        "for more room with -o max_tokens=N where the provider takes it",
        "chatplug: usage: 3 prompt + 4 completion = 7 tokens"]
    filtered = run_cli("chat", "-p", "Rich", "-o", "finish=content_filter", "-o", "tool=true",
                       "hi", env=env)
    assert filtered.stderr.splitlines() == [
        "chatplug: note: the provider's content filter stopped the reply "
        "(finish_reason content_filter)",
        "chatplug: note: the model asked for tool calls (lookup); --json shows them"]
    quiet = run_cli("chat", "-p", "Rich", "hi", env=env)
    assert (quiet.stdout, quiet.stderr) == ("You said: hi\n", "")
    rows = logged(home)
    assert (rows[0]["finish_reason"], rows[0]["total_tokens"]) == ("length", 7)
    assert rows[1]["tool_calls"] == [{"id": "call_1", "type": "function",
                                      "function": {"name": "lookup", "arguments": '{"q": 1}'}}]
    assert rows[0]["options"] == {"finish": "length"}


def test_chatplug_names_given_with_dash_o_point_to_the_right_flag(
    chatplug_server: ScriptedServer, home: Path
) -> None:
    env = env_for(chatplug_server, home)
    model = run_cli("chat", "-o", "model=x", "hi", env=env)
    assert (model.returncode, model.stderr) == (
        2, "chatplug: error: -o model=...: model is not a provider parameter; choose the "
           "model with -m MODEL\n")
    stream = run_cli("chat", "-o", "stream=true", "hi", env=env)
    assert (stream.returncode, "--no-stream" in stream.stderr) == (2, True)
    timeout = run_cli("chat", "-o", "timeout=3", "hi", env=env)
    assert (timeout.returncode, "--timeout SECONDS" in timeout.stderr) == (2, True)
    assert chatplug_server.requests == []


def test_several_providers_need_a_route(chatplug_server: ScriptedServer, home: Path) -> None:
    result = run_cli("chat", "-p", "GravityEngine", "-p", "OpenAI/gpt-4o", "hi",
                     env=env_for(chatplug_server, home))
    # The registry builds ad-hoc routes once it has Registry.route; until then, a usage error.
    from chatplug import Registry

    if hasattr(Registry, "route"):
        assert result.returncode in (0, 1), result.stderr
    else:
        assert result.returncode == 2
        assert "several -p make a route" in result.stderr


def test_a_full_disk_on_stdout_is_one_line(chatplug_server: ScriptedServer, home: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    env = env_for(chatplug_server, home)
    with open("/dev/full", "w") as full:
        for args in (["chat", "hi"], ["providers"], ["chat", "--no-stream", "hi"]):
            result = subprocess.run([CHATPLUG, *args], stdout=full, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True, env=env, timeout=30)
            assert result.returncode == 1, args
            assert result.stderr == ("chatplug: error: cannot write to standard output: "
                                     "No space left on device\n"), args


# -- waiting, retries, --timeout --------------------------------------------------------


def test_the_waiting_status_shows_within_a_second_on_a_terminal(home: Path,
                                                                 tmp_path: Path) -> None:
    reply = tmp_path / "stdout.txt"

    with RawServer() as server:

        def silent(conn: socket.socket, request: bytes) -> None:
            sleep_until_stopped(server, 10)  # accepts, reads the request, never answers

        server.then(silent)
        argv = [CHATPLUG, "chat", "--timeout", "2", "hi"]
        with Terminal(argv, env_for(server, home), stdout=str(reply)) as term:
            shown = term.expect(r"waiting for GravityEngine \(gpt-3\.5-turbo-16k\) · \d s",
                                timeout=5)
            assert shown < 1.0
            term.expect(r"chatplug: error: GravityEngine: .*deadline passed", timeout=10)
            assert term.wait() == 1
        assert reply.read_text() == ""  # nothing of this on stdout
    rows = logged(home)
    assert rows[0]["error_code"] == "timeout"


def test_retries_are_announced_on_a_terminal_and_never_in_a_pipe(
    chatplug_server: ScriptedServer, home: Path, tmp_path: Path
) -> None:
    reply = tmp_path / "stdout.txt"
    env = env_for(chatplug_server, home, CHATPLUG_RETRY_BACKOFF="0.2")
    for _ in range(2):
        chatplug_server.add(status=503, text="busy")
    with Terminal([CHATPLUG, "chat", "hi"], env, stdout=str(reply)) as term:
        # Backoff 0.2 s with jitter: 0.1-0.2 s, then 0.2-0.4 s.
        term.expect(r"chatplug: 503 from GravityEngine, retrying in 0\.[12] s \(2/3\)")
        term.expect(r"chatplug: 503 from GravityEngine, retrying in 0\.[234] s \(3/3\)")
        assert term.wait() == 0
    assert reply.read_text() == "You said: hi\n"
    for _ in range(2):
        chatplug_server.add(status=503, text="busy")
    piped = run_cli("chat", "hi", env=env)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "You said: hi\n", "")
