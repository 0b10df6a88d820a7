"""``GET /ui``: the gateway's page for people (admin key): usage by day and by key and
model as charts, the keys and their limits, the last errors.

Server-rendered HTML with inline SVG and no script (:mod:`.page`), from the gateway's
database (:mod:`.queries`, read on a worker thread): the gateway's own when it has one
(``gateway.database``), else the one ``CHATPLUG_SERVER_DATABASE_URL`` names, opened on
the first view.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from ...errors import ChatplugError
from ..admin_only import admin_refusal
from ..errors import GatewayError
from .page import render
from .queries import read_overview

if TYPE_CHECKING:
    from starlette.requests import Request

    from ...accounting.database import Database

__all__ = ["ui_page"]

_lock = threading.Lock()


def _database(state: Any) -> Database:
    gateway = state.gateway
    database: Database | None = getattr(gateway, "database", None)
    if database is not None:
        return database
    if gateway.ledger is not None:  # the ledger's own (its connections are per thread)
        ledger_database: Database = gateway.ledger.database
        return ledger_database
    with _lock:
        database = getattr(state, "ui_database", None)
        if database is None:
            database = state.ui_database = gateway.settings.database()
    return database


def _page(state: Any) -> str:
    now = time.time()
    return render(read_overview(_database(state), now), now)


async def ui_page(request: Request) -> Response:
    """``GET /ui``: the page, the admin key's refusal, or 503 naming why the database
    cannot be read."""
    refusal = admin_refusal(request, request.app.state.gateway.settings)
    if refusal is not None:
        return refusal
    try:
        html = await run_in_threadpool(_page, request.app.state)
    except ChatplugError as exc:
        error = GatewayError(503, f"the gateway database cannot be read: {exc}",
                             code="database_unavailable")
        return Response(error.encoded(), 503, media_type="application/json")
    return HTMLResponse(html, headers={"cache-control": "no-store",
                                       "content-security-policy": "default-src 'none'; "
                                       "style-src 'unsafe-inline'; img-src 'self'"})
