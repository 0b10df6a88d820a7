"""The logs database: what ``chatplug chat`` writes, what ``chatplug logs`` reads, a real
SQLite file each time (mode, WAL, schema version, migrations, concurrent writers)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from chatplug import Registry, StorageError
from chatplug.logs import LogObserver, LogStore, Record
from chatplug.logs.schema import VERSION, migrate
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

from .conftest import BIN, PLANTED_KEY, run_cli

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def env_for(server: ScriptedServer, home: Path, **extra: str) -> dict[str, str]:
    return {"CHATPLUG_HOME": str(home), "CHATPLUG_GRAVITYENGINE_URL": server.url,
            "CHATPLUG_OPENAI_URL": server.url + "/v1", **extra}


def records(home: Path, *args: str) -> list[dict[str, object]]:
    result = run_cli("logs", "--json", *args, env={"CHATPLUG_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


def test_each_exchange_is_a_row_in_a_private_wal_database(
    chatplug_server: ScriptedServer, home: Path
) -> None:
    env = env_for(chatplug_server, home)
    first = run_cli("chat", "-s", "Be brief.", "-o", "temperature=0.25", "hi", env=env)
    assert first.returncode == 0
    chatplug_server.add(status=400, text="no such thing")
    assert run_cli("chat", "--no-stream", "bad one", env=env).returncode == 1
    database = home / "logs.db"
    assert run_cli("logs", "path", env={"CHATPLUG_HOME": str(home)}).stdout == f"{database}\n"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    ok, failed = records(home)
    assert (ok["id"], failed["id"]) == (1, 2)
    assert ok["conversation_id"] != failed["conversation_id"]
    assert (ok["provider"], ok["model"], ok["system"], ok["prompt"], ok["reply"]) == (
        "GravityEngine", "gpt-3.5-turbo-16k", "Be brief.", "hi", "You said: hi")
    assert ok["messages"] == [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "hi"}]
    assert (ok["options"], ok["stream"], ok["attempts"], ok["error"]) == (
        {"temperature": 0.25}, True, 1, None)
    assert isinstance(ok["duration_s"], float)
    assert ok["time"].endswith("+00:00")  # type: ignore[union-attr]
    assert (failed["stream"], failed["error_code"], failed["reply"]) == (
        False, "upstream_http_error", None)
    assert "400 Bad Request: no such thing" in str(failed["error"])


def test_a_planted_key_never_reaches_the_database(
    chatplug_server: ScriptedServer, home: Path
) -> None:
    env = env_for(chatplug_server, home, OPENAI_API_KEY=PLANTED_KEY)
    assert run_cli("chat", "-p", "OpenAI", "-m", "m", "hi", env=env).returncode == 0
    chatplug_server.add(status=401, text="Incorrect API key provided", echo_key=True)
    refused = run_cli("chat", "-p", "OpenAI", "-m", "m", "again", env=env)
    assert refused.returncode == 1
    assert chatplug_server.requests[-1].headers["Authorization"] == f"Bearer {PLANTED_KEY}"
    assert len(records(home)) == 2
    for path in home.iterdir():  # the database and whatever WAL files SQLite left
        assert PLANTED_KEY.encode() not in path.read_bytes(), path


def test_no_log_and_chatplug_log_off(chatplug_server: ScriptedServer, home: Path) -> None:
    env = env_for(chatplug_server, home)
    assert run_cli("chat", "--no-log", "one", env=env).returncode == 0
    assert run_cli("chat", "two", env={**env, "CHATPLUG_LOG": "off"}).returncode == 0
    assert not home.exists()
    assert run_cli("logs", env={"CHATPLUG_HOME": str(home)}).stdout.startswith("Nothing logged yet")
    assert not home.exists()  # reading never creates the database


def test_list_search_filter_and_show(chatplug_server: ScriptedServer, home: Path) -> None:
    env = env_for(chatplug_server, home, OPENAI_API_KEY="k")
    for prompt in ("the weather in Paris", "a recipe for soup", "weather again: rain?"):
        assert run_cli("chat", prompt, env=env).returncode == 0
    assert run_cli("chat", "-p", "OpenAI", "-m", "gpt-4o", "soup or salad", env=env).returncode == 0
    assert [r["id"] for r in records(home, "-n", "2")] == [3, 4]
    assert [r["id"] for r in records(home, "-q", "weather")] == [1, 3]
    assert [r["id"] for r in records(home, "-q", "rain? weather")] == [3]  # punctuation is text
    assert [r["id"] for r in records(home, "-q", "soup", "-p", "openai")] == [4]
    assert [r["id"] for r in records(home, "-m", "gpt-3.5-turbo-16k")] == [1, 2, 3]
    cid = records(home)[1]["conversation_id"]
    assert [r["id"] for r in records(home, "--cid", str(cid))] == [2]

    table = run_cli("logs", "-n", "2", env={"CHATPLUG_HOME": str(home)}).stdout.splitlines()
    assert table[0].split() == ["ID", "TIME", "CONVERSATION", "PROVIDER", "MODEL", "PROMPT",
                                "REPLY"]
    assert table[1].startswith("3 ")
    assert "weather again: rain?" in table[1]
    assert "OpenAI" in table[2]
    assert "gpt-4o" in table[2]

    shown = run_cli("logs", "show", "4", env={"CHATPLUG_HOME": str(home)})
    assert shown.returncode == 0
    assert "provider: OpenAI   model: gpt-4o" in shown.stdout
    assert "--- prompt\nsoup or salad\n--- reply\nYou said: soup or salad\n" in shown.stdout
    as_json = json.loads(run_cli("logs", "show", "4", "--json",
                                 env={"CHATPLUG_HOME": str(home)}).stdout)
    assert (as_json["id"], as_json["prompt"]) == (4, "soup or salad")
    missing = run_cli("logs", "show", "99", env={"CHATPLUG_HOME": str(home)})
    assert (missing.returncode, "no record 99" in missing.stderr) == (2, True)
    nothing = run_cli("logs", "-q", "zebra", env={"CHATPLUG_HOME": str(home)})
    assert nothing.stdout.startswith("Nothing logged matches")


def test_eight_concurrent_processes_lose_no_row(
    chatplug_server: ScriptedServer, home: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env.update(env_for(chatplug_server, home))
    processes = [subprocess.Popen([str(BIN / "chatplug"), "chat", f"prompt {n}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, text=True, env=env)
                 for n in range(8)]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        outputs.append((process.returncode, out, err))
    assert sorted(outputs) == sorted((0, f"You said: prompt {n}\n", "") for n in range(8))
    found = records(home, "-n", "0")
    assert sorted(str(r["prompt"]) for r in found) == sorted(f"prompt {n}" for n in range(8))
    assert sorted(int(str(r["id"])) for r in found) == list(range(1, 9))


def test_a_database_that_cannot_be_written_costs_a_warning_not_the_reply(
    chatplug_server: ScriptedServer, home: Path
) -> None:
    home.mkdir()
    (home / "logs.db").write_bytes(b"this is not a database, it is a text file\n" * 100)
    result = run_cli("chat", "hi", env=env_for(chatplug_server, home))
    assert (result.returncode, result.stdout) == (0, "You said: hi\n")
    [line] = result.stderr.splitlines()
    assert line.startswith("chatplug: warning: this exchange was not logged: cannot open")
    assert "move the file away" in line
    listing = run_cli("logs", env={"CHATPLUG_HOME": str(home)})
    assert (listing.returncode, len(listing.stderr.splitlines())) == (1, 1)


def test_a_version_one_database_is_migrated_and_its_rows_become_searchable(
    tmp_path: Path
) -> None:
    path = tmp_path / "logs.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, upto=1) == 1
    db.execute("INSERT INTO responses (conversation_id, time, prompt, reply) "
               "VALUES ('c1', '2024-01-01T00:00:00+00:00', 'old prompt', 'old reply')")
    db.close()
    with LogStore(path) as store:
        assert [r.prompt for r in store.recent(query="old")] == ["old prompt"]
        store.record(Record("c2", prompt="new prompt", reply="fresh reply"))
        assert [r.reply for r in store.recent(query="reply")] == ["old reply", "fresh reply"]
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == VERSION


def test_without_a_full_text_index_search_matches_substrings(tmp_path: Path) -> None:
    # What an SQLite built without FTS5 leaves: the schema is current, the index absent.
    path = tmp_path / "logs.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, upto=1)
    db.execute(f"PRAGMA user_version = {VERSION}")
    db.close()
    with LogStore(path) as store:
        store.record(Record("c", prompt="100% sure_thing", reply="ok"))
        store.record(Record("c", prompt="100 sure things", reply="ok"))
        assert [r.id for r in store.recent(query="100% sure_")] == [1]


def test_a_database_from_a_newer_chatplug_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {VERSION + 1}")
    with pytest.raises(StorageError, match="newer than this chatplug understands"):
        LogStore(path).recent()


def test_the_library_never_logs_by_itself_and_an_app_can_opt_in(
    chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    registry = registry_for(chatplug_server)
    registry.get("GravityEngine").create(messages=MESSAGES)
    assert not (Path(os.environ["CHATPLUG_HOME"]) / "logs.db").exists()

    store = LogStore(tmp_path / "app.db")
    opted: Registry = registry_for(chatplug_server, max_retries=0)
    opted.register_observer(LogObserver(store), name="logs")
    assert opted.get("GravityEngine").create(messages=MESSAGES) == "You said: hello"
    chatplug_server.add(status=500, text="down")
    with pytest.raises(Exception, match="500"):
        opted.get("GravityEngine").create(messages=MESSAGES)
    assert opted.flush_observers(5)
    done, failed = store.recent()
    assert (done.provider, done.model, done.attempts, done.error, done.prompt) == (
        "GravityEngine", "gpt-3.5-turbo-16k", 1, None, None)
    assert (failed.error_code, "500 Internal Server Error" in str(failed.error)) == (
        "upstream_http_error", True)
    registry.close()
    opted.close()
    store.close()


def test_the_write_ahead_files_are_private_too(tmp_path: Path) -> None:
    with LogStore(tmp_path / "private" / "logs.db") as store:
        store.record(Record("c", prompt="secret plans"))
        names = sorted(p.name for p in (tmp_path / "private").iterdir())
        assert names == ["logs.db", "logs.db-shm", "logs.db-wal"]
        for path in (tmp_path / "private").iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
