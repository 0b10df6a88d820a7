"""The CLI against a hostile server and a careless checkout: a reply's terminal control
sequences are never obeyed, concurrent ``keys set`` never lose a key, a ``.env`` never
redirects a saved key.  Real ``chatplug`` subprocesses, real terminals (pty)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from chatplug.testing import ScriptedServer

from .conftest import BIN, run_cli
from .terminal import Terminal

CHATPLUG = str(BIN / "chatplug")

#: A reply that tries to write the clipboard (OSC 52), clear the screen, set the window's
#: title and ask for the cursor position (C1 CSI), each escape split across two pieces.
HOSTILE_PIECES = ["safe ", "\x1b]52;c;", "SGVsbG8=\x07 ", "\x1b[", "2J", "\x1b]0;pw",
                  "ned\x07", "\x9b6n", " end"]
HOSTILE = "".join(HOSTILE_PIECES)
#: What a terminal must never receive from a reply.
OBEYED = ("\x1b]", "\x07", "\x1b[2J", "\x9b")


def terminal_env(server: ScriptedServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATPLUG_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(CHATPLUG_HOME=str(home), CHATPLUG_GRAVITYENGINE_URL=server.url, TERM="dumb",
               LANG="C.UTF-8", LC_ALL="C.UTF-8")
    return env


def assert_not_obeyed(output: str) -> None:
    for sequence in OBEYED:
        assert sequence not in output, (sequence, output)


def test_a_reply_cannot_drive_the_terminal_in_chat_logs_and_logs_show(
    chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    env = terminal_env(chatplug_server, tmp_path / "home")
    chatplug_server.add(pieces=HOSTILE_PIECES)
    with Terminal([CHATPLUG, "chat", "hi"], env) as term:
        assert term.wait() == 0
    assert_not_obeyed(term.output)
    # Visible instead, as `cat -v` shows them; the text around them is intact.
    assert "safe ^[]52;c;SGVsbG8=^G ^[[2J^[]0;pwned^GM-^[6n end" in term.output
    for argv in (["logs"], ["logs", "show", "1"]):
        with Terminal([CHATPLUG, *argv], env) as term:
            assert term.wait() == 0
        assert_not_obeyed(term.output)
        assert "^[]52;c;" in term.output
    # Not a terminal: the reply is data, and a pipe gets it as it came.
    chatplug_server.add(pieces=HOSTILE_PIECES)
    piped = run_cli("chat", "hi", env=env)
    assert piped.stdout == HOSTILE + "\n" or piped.stdout == HOSTILE


def test_json_on_a_terminal_is_the_same_json_with_every_control_escaped(
    chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    env = terminal_env(chatplug_server, tmp_path / "home")
    chatplug_server.add(pieces=HOSTILE_PIECES, stream=False, text=HOSTILE)
    with Terminal([CHATPLUG, "chat", "--json", "hi"], env) as term:
        assert term.wait() == 0
    assert_not_obeyed(term.output)
    body = term.output[term.output.index("{"): term.output.rindex("}") + 1]
    assert json.loads(body.replace("\r\n", "\n"))["text"] == HOSTILE
    with Terminal([CHATPLUG, "logs", "--json"], env) as term:
        assert term.wait() == 0
    assert_not_obeyed(term.output)
    body = term.output[term.output.index("["): term.output.rindex("]") + 1]
    assert json.loads(body.replace("\r\n", "\n"))[0]["reply"] == HOSTILE


@pytest.mark.parametrize("text", ["\x1b]52;c;SGVsbG8=\x07", "\x9b2J"])
def test_an_error_quoting_a_server_reaches_the_terminal_neutralised(
    chatplug_server: ScriptedServer, tmp_path: Path, text: str
) -> None:
    env = terminal_env(chatplug_server, tmp_path / "home")
    env["CHATPLUG_MAX_RETRIES"] = "0"
    chatplug_server.add(status=400, text=f"bad request {text}")
    with Terminal([CHATPLUG, "chat", "hi"], env) as term:
        assert term.wait() == 1
    assert "bad request" in term.output
    assert_not_obeyed(term.output)


# -- hole 12: concurrent `keys set` ----------------------------------------------------


def test_ten_concurrent_keys_set_keep_every_key(tmp_path: Path) -> None:
    """Ten ``chatplug keys set`` at once, each for another provider (third parties' names,
    installed as distributions so ``keys set`` accepts them): every key is in the file."""
    from .distributions import PROVIDER, PROVIDER_GROUP, make_distribution

    names = [f"Racer{i}" for i in range(10)]
    site = tmp_path / "site"
    make_distribution(site, "chatplug-racers", {name.lower(): PROVIDER for name in names},
                      {PROVIDER_GROUP: {name: name.lower() for name in names}})
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATPLUG_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(CHATPLUG_HOME=str(home), PYTHONPATH=str(site))
    processes = [subprocess.Popen([CHATPLUG, "keys", "set", name], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                 for name in names]
    try:
        # Each waits for its key on standard input: once all do, the keys go at once, so
        # the ten read-modify-writes of the file overlap.
        _wait_reading_stdin([p.pid for p in processes], 30)
        for process, name in zip(processes, names, strict=True):
            assert process.stdin is not None
            process.stdin.write(f"key-of-{name}-0123456789\n".encode())
            process.stdin.close()
        for process, name in zip(processes, names, strict=True):
            assert process.wait(timeout=60) == 0
            assert process.stderr is not None
            assert b"saved the key for " + name.encode() in process.stderr.read()
    finally:
        for process in processes:
            process.kill()
            process.wait()
            assert process.stderr is not None
            process.stderr.close()
    saved = json.loads((home / "keys.json").read_text())
    assert saved == {name: f"key-of-{name}-0123456789" for name in names}


def _wait_reading_stdin(pids: list[int], seconds: float) -> None:
    """Until every process sleeps in a read of its pipe (Linux's /proc says where), at
    most ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            places = [Path(f"/proc/{pid}/wchan").read_text() for pid in pids]
        except OSError:
            return  # no /proc: the test still runs, the keys just go as they can
        if all("pipe" in place for place in places):
            return
        time.sleep(0.05)
    # A kernel that hides wchan ("0") never says "pipe": by now every process waits anyway.


# -- hole 13: a .env that redirects a saved key ------------------------------------------

SAVED_KEY = "sk-saved-0123456789abcdef"


def _in_checkout(checkout: Path, home: Path, *args: str, input: str = "",
                 **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATPLUG_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(CHATPLUG_HOME=str(home), CHATPLUG_MAX_RETRIES="0", **extra)
    return subprocess.run([CHATPLUG, *args], cwd=checkout, env=env, input=input,
                          capture_output=True, text=True, timeout=60)


def _keys_received(server: ScriptedServer) -> list[str | None]:
    return [r.headers.get("Authorization") for r in server.requests]


@pytest.mark.parametrize("variable", ["CHATPLUG_OPENAI_URL", "OPENAI_BASE_URL"])
def test_a_dotenv_url_never_receives_the_saved_key_unless_trusted(
    chatplug_server: ScriptedServer, tmp_path: Path, variable: str
) -> None:
    home, checkout = tmp_path / "home", tmp_path / "checkout"
    checkout.mkdir()
    saved = _in_checkout(tmp_path, home, "keys", "set", "OpenAI", input=SAVED_KEY + "\n")
    assert saved.returncode == 0, saved.stderr
    (checkout / ".env").write_text(f"{variable}={chatplug_server.url}/v1\n")
    refused = _in_checkout(checkout, home, "chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi")
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"chatplug: error: OpenAI: the .env file in {checkout} sets "
                           f"{variable} to {chatplug_server.url}/v1")
    assert f"the keys file {home / 'keys.json'}" in line
    assert "CHATPLUG_TRUST_DOTENV=1" in line
    assert SAVED_KEY not in refused.stdout + refused.stderr
    models = _in_checkout(checkout, home, "models", "OpenAI")
    assert "CHATPLUG_TRUST_DOTENV=1" in models.stdout + models.stderr
    assert chatplug_server.requests == []  # the key went nowhere
    # A key exported in the shell is the user's own as much as a saved one.
    exported = _in_checkout(checkout, home, "chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi",
                            CHATPLUG_OPENAI_API_KEY=SAVED_KEY)
    assert exported.returncode == 1
    assert "CHATPLUG_OPENAI_API_KEY in the environment would be sent" in exported.stderr
    assert chatplug_server.requests == []
    # Trusted by the environment (never by the .env itself), it goes.
    (checkout / ".env").write_text(f"{variable}={chatplug_server.url}/v1\n"
                                   "CHATPLUG_TRUST_DOTENV=1\n")
    still = _in_checkout(checkout, home, "chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi")
    assert still.returncode == 1
    assert chatplug_server.requests == []
    trusted = _in_checkout(checkout, home, "chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi",
                           CHATPLUG_TRUST_DOTENV="1")
    assert trusted.returncode == 0, trusted.stderr
    assert _keys_received(chatplug_server) == [f"Bearer {SAVED_KEY}"]


def test_a_dotenv_url_with_its_own_key_or_an_environment_url_is_used(
    chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    home, checkout = tmp_path / "home", tmp_path / "checkout"
    checkout.mkdir()
    _in_checkout(tmp_path, home, "keys", "set", "OpenAI", input=SAVED_KEY + "\n")
    # The checkout's .env brings its URL and its own key: nothing of the user's goes.
    (checkout / ".env").write_text(f"CHATPLUG_OPENAI_URL={chatplug_server.url}/v1\n"
                                   "CHATPLUG_OPENAI_API_KEY=sk-checkout-own-key-000\n")
    own = _in_checkout(checkout, home, "chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi")
    assert own.returncode == 0, own.stderr
    # The URL set in the environment is the user's choice.
    (checkout / ".env").unlink()
    chosen = _in_checkout(checkout, home, "chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi",
                          CHATPLUG_OPENAI_URL=f"{chatplug_server.url}/v1")
    assert chosen.returncode == 0, chosen.stderr
    assert _keys_received(chatplug_server) == ["Bearer sk-checkout-own-key-000",
                                               f"Bearer {SAVED_KEY}"]


def test_the_library_raises_the_typed_error(chatplug_server: ScriptedServer, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from chatplug import ConfigurationError, Registry, UntrustedDotenvError
    from chatplug.keys import save_key

    monkeypatch.setenv("CHATPLUG_HOME", str(tmp_path / "home"))
    save_key("OpenAI", SAVED_KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"OPENAI_BASE_URL={chatplug_server.url}/v1\n")
    provider = Registry().get("OpenAI")
    with pytest.raises(UntrustedDotenvError, match="CHATPLUG_TRUST_DOTENV=1") as caught:
        provider.create([{"role": "user", "content": "hi"}], model="gpt-4o-mini")
    assert isinstance(caught.value, ConfigurationError)
    assert caught.value.code == "untrusted_dotenv"
    # A URL passed in code is the caller's choice.
    text = provider.create([{"role": "user", "content": "hi"}], model="gpt-4o-mini",
                           url=f"{chatplug_server.url}/v1")
    assert text == "You said: hi"
    assert _keys_received(chatplug_server) == [f"Bearer {SAVED_KEY}"]


# -- section 5: what a new user trips over ------------------------------------------------


def test_chatplug_alone_prints_the_help_and_exits_2() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert result.stdout.startswith("usage: chatplug")
    for command in ("chat", "providers", "keys", "logs"):
        assert f"    {command}" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("argv", [["keys", "path"], ["logs", "path"], ["providers"],
                                  ["chat", "hi"], ["batch", "missing.jsonl", "-o", "out"]])
def test_every_command_reports_a_misspelled_variable_once(
    chatplug_server: ScriptedServer, tmp_path: Path, argv: list[str]
) -> None:
    argv = [str(tmp_path / a) if a.endswith(("jsonl", "out")) else a for a in argv]
    result = run_cli(*argv, env={"CHATPLUG_TIMOUT": "5", "CHATPLUG_GRAVITYENGINE_URL":
                                 chatplug_server.url, "CHATPLUG_HOME": str(tmp_path)})
    warning = ("chatplug: warning: CHATPLUG_TIMOUT is not a chatplug setting and is ignored; "
               "did you mean CHATPLUG_TIMEOUT?")
    assert result.stderr.splitlines().count(warning) == 1, result.stderr
    assert result.stderr.startswith(warning)
    clean = run_cli(*argv, env={"CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url,
                                "CHATPLUG_HOME": str(tmp_path)})
    assert "warning" not in clean.stderr


def _nowhere() -> dict[str, str]:
    """Proxies at a closed loopback port: a call to a public URL fails here, at once."""
    from .conftest import free_port

    proxy = f"http://127.0.0.1:{free_port()}"
    return {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "NO_PROXY": "127.0.0.1"}


def test_chat_without_p_goes_to_the_provider_with_a_key_and_says_where(
    chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    host = f"127.0.0.1:{chatplug_server.port}"
    env = terminal_env(chatplug_server, tmp_path / "home")
    del env["CHATPLUG_GRAVITYENGINE_URL"]
    env.update(OPENAI_API_KEY=SAVED_KEY, CHATPLUG_OPENAI_URL=f"{chatplug_server.url}/v1",
               **_nowhere())
    with Terminal([CHATPLUG, "chat", "-m", "gpt-4o-mini", "hi"], env) as term:
        assert term.wait() == 0, term.text
    assert (f"chatplug: sending to OpenAI at {host} (choose another provider with -p)\n"
            "You said: hi\n") in term.text
    # -m gpt-4o-mini asked OpenAI's server (the one configured) for its models first.
    [request] = [r for r in chatplug_server.requests if r.method == "POST"]
    assert request.path == "/v1/chat/completions"  # OpenAI's route, not GravityEngine's
    # In a pipe the same choice, and stderr keeps to failures.
    piped = run_cli("chat", "-m", "gpt-4o-mini", "hi", env=env)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "You said: hi\n", "")
    assert chatplug_server.requests[-1].path == "/v1/chat/completions"
    # GravityEngine's URL configured: it is the default again.
    env["CHATPLUG_GRAVITYENGINE_URL"] = chatplug_server.url
    with Terminal([CHATPLUG, "chat", "hi"], env) as term:
        assert term.wait() == 0, term.text
    assert f"sending to GravityEngine at {host}" in term.text
    assert chatplug_server.requests[-1].path == "/api/openai/v1/chat/completions"
    # Named with -p: the person knows where it goes.
    with Terminal([CHATPLUG, "chat", "-p", "GravityEngine", "hi"], env) as term:
        assert term.wait() == 0, term.text
    assert "sending to" not in term.text


def test_chat_without_any_key_says_it_goes_to_the_public_default(
    chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    env = terminal_env(chatplug_server, tmp_path / "home")
    del env["CHATPLUG_GRAVITYENGINE_URL"]
    env.update(CHATPLUG_MAX_RETRIES="0", **_nowhere())
    with Terminal([CHATPLUG, "chat", "hi"], env) as term:
        assert term.wait() == 1, term.text
    assert ("chatplug: sending to GravityEngine at gpt4.xunika.uk (choose another provider "
            "with -p)\n") in term.text


def test_the_interactive_chat_says_where_once_per_conversation(
    chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    env = terminal_env(chatplug_server, tmp_path / "home")
    with Terminal([CHATPLUG, "chat"], env) as term:
        term.expect(r"chatting with GravityEngine")
        for word in ("one", "two", "!reset", "three"):
            mark = len(term.text)
            term.expect(r"> ", after=max(mark - 2, 0))
            term.send(f"{word}\r")
            term.expect("new conversation" if word == "!reset" else f"You said: {word}\n",
                        after=mark)
        term.send("!exit\r")
        assert term.wait() == 0
    assert term.text.count(f"sending to GravityEngine at 127.0.0.1:{chatplug_server.port}") == 2


def test_cli_errors_give_cli_advice(chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    env = {"CHATPLUG_HOME": str(tmp_path), "CHATPLUG_MAX_RETRIES": "0",
           "CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url,
           "CHATPLUG_OPENAI_URL": f"{chatplug_server.url}/v1"}
    missing = run_cli("chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi", env=env)
    assert missing.returncode == 1
    assert missing.stderr.rstrip("\n").endswith(
        "Set CHATPLUG_OPENAI_API_KEY (or OPENAI_API_KEY) in the environment or in .env, or "
        "save it with `chatplug keys set OpenAI`.")
    chatplug_server.add(status=401)
    refused = run_cli("chat", "-p", "OpenAI", "-m", "gpt-4o-mini", "hi",
                      env={**env, "CHATPLUG_OPENAI_API_KEY": SAVED_KEY})
    assert refused.returncode == 1
    assert "Check CHATPLUG_OPENAI_API_KEY" in refused.stderr
    assert "(or the key saved with `chatplug keys set OpenAI`)." in refused.stderr
    chatplug_server.add(text="late", delay=5)
    late = run_cli("chat", "--timeout", "0.5", "hi", env=env)
    assert late.returncode == 1
    assert "Allow more time with --timeout SECONDS (or CHATPLUG_TIMEOUT)." in late.stderr
    models = run_cli("models", "OpenAI", env=env)
    assert "`chatplug keys set OpenAI`" in models.stdout + models.stderr
    for result in (missing, refused, late, models):
        assert "api_key=" not in result.stderr + result.stdout
        assert "timeout=" not in result.stderr + result.stdout
        assert "create(" not in result.stderr + result.stdout


def test_the_library_names_its_own_api_and_the_hint_kind() -> None:
    from chatplug import Registry
    from chatplug.errors import ADVICE, AuthenticationError

    with pytest.raises(AuthenticationError) as caught:
        Registry().get("OpenAI").create([{"role": "user", "content": "hi"}], model="m")
    assert caught.value.hint == "api_key"
    assert str(caught.value).endswith(ADVICE["api_key"])
