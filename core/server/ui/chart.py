"""Inline SVG charts drawn on the server (no JavaScript): tokens by day as stacked bars,
tokens by key and model as horizontal bars.  Every label is escaped; each bar carries
its figures in ``data-*`` attributes and a ``<title>`` (the tooltip)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from html import escape

__all__ = ["INPUT_COLOR", "OUTPUT_COLOR", "bars", "day_label", "days_chart"]

#: The colours of input and output tokens (the page's legend uses them too).
INPUT_COLOR = "#3b6fd8"
OUTPUT_COLOR = "#e8873a"

_WIDTH, _HEIGHT, _LEFT, _BOTTOM, _TOP = 760, 240, 64, 28, 12


def day_label(day: int) -> str:
    """``2026-12-07`` for a day number since the epoch."""
    return datetime.datetime.fromtimestamp(day * 86400, datetime.timezone.utc).strftime("%Y-%m-%d")


def _count(value: float) -> str:
    if value >= 10_000_000:
        return f"{value / 1_000_000:.0f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,.0f}"


def days_chart(first_day: int, days: int,
               rows: Sequence[tuple[int, int, int, int, float]]) -> str:
    """Input and output tokens of each of ``days`` days from ``first_day``, stacked."""
    by_day = {row[0]: row for row in rows}
    peak = max([row[2] + row[3] for row in rows] + [1])
    plot = _HEIGHT - _BOTTOM - _TOP
    step = (_WIDTH - _LEFT) / days
    width = max(step * 0.7, 2)
    parts = [f'<svg class="chart" id="days-chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
             f'width="{_WIDTH}" height="{_HEIGHT}" role="img" '
             'aria-label="tokens by day">']
    for fraction in (0, 0.5, 1):
        y = _TOP + plot * (1 - fraction)
        parts.append(f'<line x1="{_LEFT}" x2="{_WIDTH}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'class="axis">{_count(peak * fraction)}</text>')
    for index in range(days):
        day = first_day + index
        _, requests, tokens_in, tokens_out, _cost = by_day.get(day, (day, 0, 0, 0, 0.0))
        x = _LEFT + index * step + (step - width) / 2
        label = day_label(day)
        high_in = plot * tokens_in / peak
        high_out = plot * tokens_out / peak
        base = _TOP + plot
        title = (f"{label}: {requests:,} requests, {tokens_in:,} input and {tokens_out:,} "
                 "output tokens")
        parts.append(f'<g class="day" data-day="{label}" data-requests="{requests}" '
                     f'data-input="{tokens_in}" data-output="{tokens_out}">'
                     f'<title>{escape(title)}</title>'
                     f'<rect class="input" x="{x:.1f}" y="{base - high_in:.1f}" '
                     f'width="{width:.1f}" height="{high_in:.1f}" fill="{INPUT_COLOR}"/>'
                     f'<rect class="output" x="{x:.1f}" y="{base - high_in - high_out:.1f}" '
                     f'width="{width:.1f}" height="{high_out:.1f}" fill="{OUTPUT_COLOR}"/>')
        if (days - 1 - index) % 2 == 0 or days <= 8:  # the last day always
            parts.append(f'<text x="{x + width / 2:.1f}" y="{_HEIGHT - 8}" '
                         f'text-anchor="middle" class="axis">{label[5:]}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def bars(rows: Sequence[tuple[str, int, int]]) -> str:
    """One horizontal bar per ``(label, input tokens, output tokens)``, stacked."""
    if not rows:
        return '<p class="empty">No usage in this period.</p>'
    line, label_width, width = 22, 300, 440
    peak = max([tokens_in + tokens_out for _, tokens_in, tokens_out in rows] + [1])
    height = line * len(rows) + 4
    parts = [f'<svg class="chart" id="models-chart" viewBox="0 0 {label_width + width + 90} '
             f'{height}" width="{label_width + width + 90}" height="{height}" role="img" '
             'aria-label="tokens by key and model">']
    for index, (label, tokens_in, tokens_out) in enumerate(rows):
        y = index * line + 2
        wide_in = width * tokens_in / peak
        wide_out = width * tokens_out / peak
        safe = escape(label)
        parts.append(f'<g class="bar" data-label="{safe}" data-input="{tokens_in}" '
                     f'data-output="{tokens_out}"><title>{safe}: {tokens_in:,} input, '
                     f'{tokens_out:,} output tokens</title>'
                     f'<text x="{label_width - 8}" y="{y + 14}" text-anchor="end" '
                     f'class="label">{escape(label if len(label) <= 36 else label[:35] + "…")}'
                     '</text>'
                     f'<rect x="{label_width}" y="{y}" width="{wide_in:.1f}" height="16" '
                     f'fill="{INPUT_COLOR}"/>'
                     f'<rect x="{label_width + wide_in:.1f}" y="{y}" width="{wide_out:.1f}" '
                     f'height="16" fill="{OUTPUT_COLOR}"/>'
                     f'<text x="{label_width + wide_in + wide_out + 6:.1f}" y="{y + 13}" '
                     f'class="axis">{_count(tokens_in + tokens_out)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
