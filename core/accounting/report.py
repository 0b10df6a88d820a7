"""The usage ledger summed up: requests, errors, tokens and cost by key, model, provider
or day, from either database (``chatplug gateway usage``, the gateway's ``/ui``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .database import Database

__all__ = ["GROUPS", "Group", "usage_report"]

Group = Literal["key", "model", "provider", "day"]
GROUPS: tuple[Group, ...] = ("key", "model", "provider", "day")

_SUMS = ("COUNT(*), SUM(CASE WHEN u.status >= 400 THEN 1 ELSE 0 END), SUM(u.input_tokens), "
         "SUM(u.output_tokens), SUM(u.cached_tokens), SUM(u.reasoning_tokens), "
         "SUM(u.cost_usd), MAX(u.ts)")
#: Unpriced groups after priced ones, then the busiest first.
_COSTLIEST = "COALESCE(SUM(u.cost_usd), -1) DESC, COUNT(*) DESC"
_FIELDS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens",
           "reasoning_tokens", "cost_usd", "last")


def _group(database: Database, by: Group) -> tuple[str, str, str]:
    """The grouping's select list, its GROUP BY and its ORDER BY."""
    if by == "day":
        day = ("date(u.ts, 'unixepoch')" if database.dialect == "sqlite" else
               "to_char(to_timestamp(u.ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
        return f"{day}, NULL", day, day
    if by == "key":
        return "u.key_id, k.name", "u.key_id, k.name", _COSTLIEST
    if by == "provider":
        return "u.provider, NULL", "u.provider", _COSTLIEST
    return "u.provider || '/' || u.model, NULL", "u.provider, u.model", _COSTLIEST


def usage_report(database: Database, by: Group = "model",
                 since: float | None = None) -> list[dict[str, Any]]:
    """One dict per key, model, provider or day (``by``) of the rows since ``since``
    (Unix seconds; ``None``: all): ``name`` (the key's id, ``Provider/model``, the
    provider or ``YYYY-MM-DD`` in UTC; ``None`` for requests without one), ``key_name``
    (``by="key"``: the key's name when it is still in ``virtual_keys``), ``requests``,
    ``errors`` (status 400 or more), the four token sums, ``cost_usd`` (``None`` when no
    row was priced) and ``last`` (Unix seconds of the latest).  The costliest first
    (by day: in order).

    :raises StorageError: the database cannot be read.
    :raises ValueError: ``by`` is not one of :data:`GROUPS`.
    """
    if by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}, not {by!r}")
    select, group, order = _group(database, by)
    join = " LEFT JOIN virtual_keys k ON k.id = u.key_id" if by == "key" else ""
    where = " WHERE u.ts >= ?" if since is not None else ""
    found = database.execute(
        f"SELECT {select}, {_SUMS} FROM usage u{join}{where} GROUP BY {group} "
        f"ORDER BY {order}", () if since is None else (since,))
    report = []
    for row in found:
        entry: dict[str, Any] = {"name": row[0]}
        if by == "key":
            entry["key_name"] = row[1]
        for field, value in zip(_FIELDS, row[2:], strict=True):
            entry[field] = _plain(field, value)
        report.append(entry)
    return report


def _plain(field: str, value: Any) -> Any:
    # PostgreSQL sums BIGINTs as NUMERIC (Decimal): back to int; costs stay float.
    if value is None:
        return 0 if field in ("requests", "errors") else None
    return float(value) if field in ("cost_usd", "last") else int(value)
