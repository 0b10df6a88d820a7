"""``GET /ui``: the gateway's page, from a seeded gateway database, loaded in headless
Chromium: the figures are in its DOM, its chart draws the seeded usage (read back from a
screenshot's pixels), and whatever users named (keys, models) is escaped.

``CHATPLUG_UPDATE_DOCS=1`` also saves the screenshot as docs/images/ui.png."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from chatplug.accounting.database import open_database
from chatplug.server import ServerSettings, create_app
from chatplug.server.ui.chart import INPUT_COLOR, OUTPUT_COLOR, day_label
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.browser import dump_dom, read_png, screenshot
from tests.dbservers import PostgresServer
from tests.gatewayserver import GatewayServer

ADMIN = "admin-key-for-tests-only-0123456789"
DOCS_IMAGE = Path(__file__).resolve().parent.parent / "docs" / "images" / "ui.png"
EVIL_KEY = '<img src=x onerror="alert(1)">'
EVIL_MODEL = "<b>bold</b>-model"
#: Read at import: the tests' own fixture clears CHATPLUG_* variables.
UPDATE_DOCS = os.environ.get("CHATPLUG_UPDATE_DOCS") == "1"


def _key(database: Any, key_id: str, name: str, **fields: Any) -> None:
    row = {"id": key_id, "name": name, "key_hash": f"hash-of-{key_id}", "models": None,
           "rpm": None, "tpm": None, "max_parallel": None, "budget_tokens": None,
           "budget_usd": None, "budget_period": None, "created_at": time.time() - 86400 * 5,
           "expires_at": None, "revoked_at": None, **fields}
    database.execute(f"INSERT INTO virtual_keys ({', '.join(row)}) VALUES "
                     f"({', '.join('?' for _ in row)})", tuple(row.values()))


def _usage(database: Any, number: int, ts: float, key_id: str | None, provider: str,
           model: str, tokens_in: int | None, tokens_out: int | None, status: int = 200,
           error_type: str | None = None) -> None:
    database.execute(
        "INSERT INTO usage (id, ts, key_id, endpoint, requested_model, provider, model, "
        "attempts, status, error_type, input_tokens, output_tokens, first_piece_ms, "
        "duration_ms, cost_usd, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?, ?)",
        (f"row-{number}", ts, key_id, "/v1/chat/completions", f"{provider}/{model}",
         provider, model, 1, status, error_type, tokens_in, tokens_out, 120.0, 480.0,
         None if tokens_in is None else 0.001 * (tokens_in + (tokens_out or 0)) / 100,
         f"req-{number}"))


def seed(database: Any) -> int:
    """Two keys and a week of usage; today's day number."""
    now = time.time()
    today = int(now // 86400)
    start = today * 86400.0
    _key(database, "vk_alpha", "alpha-team", models=json.dumps(["OpenAI/*", "fast"]),
         rpm=60, tpm=100000, max_parallel=4, budget_usd=5.0, budget_period="day")
    _key(database, "vk_evil", EVIL_KEY, budget_tokens=150000, budget_period="week",
         revoked_at=now - 60)
    number = 0
    for _ in range(3):  # today: 3000 in, 1500 out
        number += 1
        _usage(database, number, min(now - 30, start + 60), "vk_alpha", "OpenAI",
               "gpt-4o-mini", 1000, 500)
    for _ in range(2):  # yesterday: 4000 in, 2000 out
        number += 1
        _usage(database, number, start - 3600, "vk_evil", "Anthropic", "claude-x", 2000, 1000)
    _usage(database, 99, start - 3 * 86400 + 60, "vk_alpha", "OpenAI", EVIL_MODEL, 600, 300)
    _usage(database, 100, min(now - 20, start + 90), "vk_alpha", "OpenAI", "gpt-4o-mini",
           None, None, status=429, error_type="rate_limit_exceeded")
    _usage(database, 101, start - 2 * 86400, "vk_evil", "Anthropic", "claude-x", None, None,
           status=502, error_type='<script>alert("x")</script>')
    return today


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A seeded SQLite gateway database, and today's day number."""
    database = open_database(f"sqlite:///{tmp_path / 'gateway.db'}")
    today = seed(database)
    yield {"today": today, "database": database}
    database.close()


@pytest.fixture
def gateway(seeded: dict[str, Any]) -> Iterator[GatewayServer]:
    with ScriptedServer(lifetime=120) as upstream:
        registry = registry_for(upstream)
        app = create_app(registry, ServerSettings(admin_key=ADMIN))
        app.state.gateway.database = seeded["database"]  # the gateway's own database
        with GatewayServer(app, lifetime=120) as server:
            yield server
        registry.close()


def test_the_page_needs_the_admin_key_and_escapes_what_users_named(
        gateway: GatewayServer) -> None:
    refused = requests.get(f"{gateway.url}/ui", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert requests.get(f"{gateway.url}/ui", auth=("admin", "wrong-key-000000000000"),
                        timeout=10).status_code == 401
    page = requests.get(f"{gateway.url}/ui", timeout=10,
                        headers={"Authorization": f"Bearer {ADMIN}"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # no script at all
    html = page.text
    assert "<script" not in html
    assert "<img" not in html
    assert "<b>bold" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;-model" in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "hash-of-" not in html  # key hashes never shown
    basic = requests.get(f"{gateway.url}/ui", auth=("anyone", ADMIN), timeout=10)
    assert basic.status_code == 200


def test_chromium_loads_the_page_with_the_seeded_figures(
        gateway: GatewayServer, seeded: dict[str, Any]) -> None:
    url = f"http://admin:{ADMIN}@127.0.0.1:{gateway.port}/ui"  # Basic auth, as a browser
    dom = dump_dom(url)
    assert "chatplug gateway" in dom
    totals = {name: re.search(rf'id="total-{name}"><b>([^<]*)</b>', dom)
              for name in ("requests", "input", "output")}
    assert {name: match.group(1) for name, match in totals.items() if match} == {
        "requests": "8", "input": "7,600", "output": "3,800"}
    today, yesterday = day_label(seeded["today"]), day_label(seeded["today"] - 1)
    assert f'data-day="{today}" data-requests="4" data-input="3000" data-output="1500"' in dom
    assert f'data-day="{yesterday}" data-requests="2" data-input="4000" data-output="2000"' \
        in dom
    # The bars' heights are the seeded tokens to scale.
    heights = {day: float(re.search(
        rf'data-day="{day}"[^>]*>.*?<rect class="input"[^>]*height="([0-9.]+)"', dom,
        re.S).group(1)) for day in (today, yesterday)}  # type: ignore[union-attr]
    assert heights[today] / heights[yesterday] == pytest.approx(3000 / 4000, rel=0.02)
    # The keys and their limits; the last errors, newest first.
    keys = dom[dom.index('id="keys"'):dom.index('id="errors"')]
    for shown in ("vk_alpha", "alpha-team", "OpenAI/*, fast", "60", "100,000",
                  "$5.00 per day", "150,000 tokens per week", "revoked", "active"):
        assert shown in keys
    errors = dom[dom.index('id="errors"'):]
    assert errors.index("rate_limit_exceeded") < errors.index("alert(")
    assert "<script>" not in dom
    assert "&lt;script&gt;" in errors


def test_the_chart_in_a_screenshot_shows_the_seeded_usage(
        gateway: GatewayServer, tmp_path: Path) -> None:
    path = tmp_path / "ui.png"
    screenshot(f"http://admin:{ADMIN}@127.0.0.1:{gateway.port}/ui", path, 1160, 1250)
    width, height, pixels = read_png(path)
    assert (width, height) == (1160, 1250)

    def rgb(color: str) -> tuple[int, int, int]:
        return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)

    tokens_in = sum(1 for pixel in pixels if pixel == rgb(INPUT_COLOR))
    tokens_out = sum(1 for pixel in pixels if pixel == rgb(OUTPUT_COLOR))
    # Both charts draw twice as much input as output (7,600 against 3,800 tokens).
    assert tokens_in > 5000
    assert tokens_in / tokens_out == pytest.approx(2, rel=0.15)
    if UPDATE_DOCS:
        DOCS_IMAGE.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGE)


def test_the_page_reads_postgresql_too(postgres: PostgresServer) -> None:
    database = open_database(postgres.database())
    try:
        today = seed(database)
        with ScriptedServer(lifetime=60) as upstream:
            registry = registry_for(upstream)
            app = create_app(registry, ServerSettings(admin_key=ADMIN))
            app.state.gateway.database = database
            with GatewayServer(app, lifetime=60) as gateway:
                page = requests.get(f"{gateway.url}/ui", auth=("admin", ADMIN), timeout=10)
            registry.close()
    finally:
        database.close()
    assert page.status_code == 200
    html = page.text
    assert (f'data-day="{day_label(today)}" data-requests="4" data-input="3000" '
            'data-output="1500"') in html
    assert (f'data-day="{day_label(today - 1)}" data-requests="2" data-input="4000" '
            'data-output="2000"') in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "150,000 tokens per week" in html
