"""The ``/ui`` page's HTML, rendered on the server from an :class:`~.queries.Overview`.

One self-contained page: inline CSS and SVG, no script.  Everything that comes from the
database (key names, model names, error types, request ids, which clients chose) is
escaped with :func:`html.escape`.
"""

from __future__ import annotations

import datetime
import json
from html import escape
from typing import Any

from .chart import INPUT_COLOR, OUTPUT_COLOR, bars, days_chart
from .queries import DAYS, Overview

__all__ = ["render"]

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#f6f7f9}
header{background:#1f2a3c;color:#fff;padding:14px 28px}header h1{margin:0;font-size:19px}
header p{margin:2px 0 0;color:#b9c3d3;font-size:13px}
main{padding:18px 28px;max-width:1100px}
section{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:14px 18px;
margin-bottom:18px;overflow-x:auto}
h2{font-size:15px;margin:0 0 10px}
.figures{display:flex;gap:28px;margin-bottom:6px}.figure b{display:block;font-size:20px}
.figure span{color:#666;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{color:#555;font-weight:600;background:#fafbfc}td.n{text-align:right;
font-variant-numeric:tabular-nums}
.axis{font-size:11px;fill:#666}.label{font-size:12px;fill:#333}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;
border-radius:2px}.empty{color:#777}
.state-active{color:#1a7f37}.state-revoked,.state-expired{color:#b42318}
code{font-size:12px}td.t{white-space:nowrap}
"""


def _when(seconds: Any) -> str:
    if seconds is None:
        return ""
    moment = datetime.datetime.fromtimestamp(float(seconds), datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any, numeric: bool = False) -> str:
    text = "" if value is None else (f"{value:,}" if isinstance(value, int) else str(value))
    return f'<td class="n">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def _table(headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _models(raw: Any) -> str:
    if raw is None:
        return "any"
    try:
        patterns = json.loads(raw)
    except (TypeError, ValueError):
        return str(raw)
    return ", ".join(str(pattern) for pattern in patterns) if isinstance(patterns, list) \
        else str(raw)


def _budget(key: dict[str, Any]) -> str:
    period = f" per {key['budget_period']}" if key.get("budget_period") else ""
    if key.get("budget_tokens") is not None:
        return f"{int(key['budget_tokens']):,} tokens{period}"
    if key.get("budget_usd") is not None:
        return f"${float(key['budget_usd']):,.2f}{period}"
    return ""


def _state(key: dict[str, Any], now: float) -> str:
    if key.get("revoked_at") is not None:
        return "revoked"
    if key.get("expires_at") is not None and float(key["expires_at"]) <= now:
        return "expired"
    return "active"


def _key_rows(overview: Overview, now: float) -> list[str]:
    spent: dict[str, list[float]] = {}
    for key_id, _provider, _model, requests, tokens_in, tokens_out, cost in \
            overview.by_key_model:
        totals = spent.setdefault(str(key_id), [0, 0, 0.0])
        totals[0] += int(requests)
        totals[1] += int(tokens_in or 0) + int(tokens_out or 0)
        totals[2] += float(cost or 0)
    rows = []
    for key in overview.keys:
        state = _state(key, now)
        requests, tokens, cost = spent.get(str(key["id"]), [0, 0, 0.0])
        rows.append(
            "<tr>" + _cell(key["id"]) + _cell(key["name"]) + _cell(_models(key["models"]))
            + "".join(_cell(None if key[limit] is None else int(key[limit]), numeric=True)
                      for limit in ("rpm", "tpm", "max_parallel"))
            + _cell(_budget(key)) + _cell(_when(key["expires_at"]))
            + f'<td class="state-{state}">{state}</td>'
            + _cell(int(requests), True) + _cell(int(tokens), True)
            + _cell(f"${cost:,.4f}" if cost else "", True) + "</tr>")
    return rows


def render(overview: Overview, now: float) -> str:
    """The whole page."""
    names = overview.key_names()
    first_day = int(overview.since // 86400)
    requests = sum(row[1] for row in overview.days)
    tokens_in = sum(row[2] for row in overview.days)
    tokens_out = sum(row[3] for row in overview.days)
    cost = sum(row[4] for row in overview.days)
    figures = "".join(
        f'<div class="figure" id="total-{name}"><b>{escape(value)}</b>'
        f"<span>{escape(label)}</span></div>"
        for name, value, label in (
            ("requests", f"{requests:,}", "requests"),
            ("input", f"{tokens_in:,}", "input tokens"),
            ("output", f"{tokens_out:,}", "output tokens"),
            ("cost", f"${cost:,.2f}", "cost (with prices)")))
    labelled = [(f"{names.get(str(key_id), key_id or 'no key')} · {provider or '?'}/"
                 f"{model or '?'}", int(t_in or 0), int(t_out or 0))
                for key_id, provider, model, _n, t_in, t_out, _c in overview.by_key_model]
    model_rows = [
        "<tr>" + _cell(names.get(str(key_id), key_id or "no key")) + _cell(provider)
        + _cell(model) + _cell(int(n), True) + _cell(int(t_in or 0), True)
        + _cell(int(t_out or 0), True) + _cell(f"${float(c or 0):,.4f}" if c else "", True)
        + "</tr>"
        for key_id, provider, model, n, t_in, t_out, c in overview.by_key_model]
    error_rows = [
        f'<tr><td class="t">{escape(_when(ts))}</td>' + _cell(names.get(str(key_id), key_id))
        + _cell(endpoint)
        + _cell(requested) + _cell(f"{provider or ''}/{model or ''}".strip("/"))
        + _cell(int(status), True) + f"<td><code>{escape(str(error_type))}</code></td>"
        + f"<td><code>{escape(str(request_id or ''))}</code></td></tr>"
        for ts, key_id, endpoint, requested, provider, model, status, error_type, request_id
        in overview.errors]
    legend = (f'<p class="legend"><span style="background:{INPUT_COLOR}"></span>input tokens'
              f'<span style="background:{OUTPUT_COLOR}"></span>output tokens</p>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>chatplug gateway</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>{_STYLE}</style></head><body>
<header><h1>chatplug gateway</h1><p>Usage of the last {DAYS} days (UTC), from
{escape(_when(overview.since)[:10])}; the page as of {escape(_when(now))}.</p></header>
<main>
<section id="usage-by-day"><h2>Usage by day</h2><div class="figures">{figures}</div>
{legend}{days_chart(first_day, DAYS, overview.days)}</section>
<section id="usage-by-key-model"><h2>Usage by key and model</h2>{bars(labelled)}
{_table(["key", "provider", "model", "requests", "input", "output", "cost"], model_rows,
        "No usage in this period.")}</section>
<section id="keys"><h2>Keys and their limits</h2>
{_table(["id", "name", "models", "rpm", "tpm", "parallel", "budget", "expires", "state",
         "requests", "tokens", "cost"], _key_rows(overview, now),
        "No virtual keys (chatplug gateway keys create).")}</section>
<section id="errors"><h2>Last errors</h2>
{_table(["time", "key", "endpoint", "model asked", "served by", "status", "error",
         "request id"], error_rows, "No errors.")}</section>
</main></body></html>
"""
