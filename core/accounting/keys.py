"""The gateway's virtual keys in its database: :class:`KeyStore`.

A key is ``cpk_`` and 43 random URL-safe characters, shown once by :meth:`KeyStore.create`
and stored only as its SHA-256 (hex); its ``id`` (``vk_…``) is what lists, the admin API
and the usage ledger show.  Spend and last use are read from the usage ledger.
Everything here blocks (database work): the gateway calls it from worker threads.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from .keyspec import PERIODS, Budget, KeySyntaxError, period_start

if TYPE_CHECKING:
    from .database import Database

__all__ = ["KEY_PREFIX", "KeyStore", "UnknownKeyError", "VirtualKey", "hash_key"]

#: Every virtual key starts with it (a scanner, a log reader, a person recognises one).
KEY_PREFIX = "cpk_"
_COLUMNS = ("id, name, models, rpm, tpm, max_parallel, budget_tokens, budget_usd, "
            "budget_period, created_at, expires_at, revoked_at")


class UnknownKeyError(InvalidRequestError, LookupError):
    """No virtual key has the id given."""


def hash_key(key: str | bytes) -> str:
    """The SHA-256 (hex) a key is stored and looked up by."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A key's identity and limits (``None``: no limit).  Never holds the key itself."""

    id: str
    name: str
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget: Budget | None = None
    period: str | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    #: Spent this period (tokens or USD, as the budget) and the last use, when read
    #: with :meth:`KeyStore.list`.
    spent: float = 0.0
    last_used: float | None = field(default=None, compare=False)

    def usable(self, now: float) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def as_dict(self) -> dict[str, Any]:
        """The key as lists and the admin API show it (never the key)."""
        return {"id": self.id, "name": self.name,
                "models": list(self.models) if self.models is not None else None,
                "rpm": self.rpm, "tpm": self.tpm, "max_parallel": self.max_parallel,
                "budget": str(self.budget) if self.budget else None, "period": self.period,
                "spent": self.spent if self.budget else None,
                "created_at": self.created_at, "expires_at": self.expires_at,
                "revoked_at": self.revoked_at, "last_used": self.last_used}


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise KeySyntaxError(f"{name} must be a whole number of 1 or more; got {value!r}.")
    return value


def _row(row: tuple[Any, ...]) -> VirtualKey:
    (key_id, name, models, rpm, tpm, parallel, budget_tokens, budget_usd, period, created,
     expires, revoked) = row
    budget = (Budget(float(budget_tokens), "tokens") if budget_tokens is not None else
              Budget(float(budget_usd), "usd") if budget_usd is not None else None)
    return VirtualKey(key_id, name, tuple(json.loads(models)) if models else None, rpm, tpm,
                      parallel, budget, period, created, expires, revoked)


class KeyStore:
    """Create, list and revoke virtual keys in ``database``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create(self, name: str, *, models: tuple[str, ...] | None = None,
               rpm: int | None = None, tpm: int | None = None,
               max_parallel: int | None = None, budget: Budget | None = None,
               period: str | None = None, expires_in: float | None = None,
               priced: bool = False) -> tuple[VirtualKey, str]:
        """A new key: its record and the key itself (shown once, never stored).

        :param priced: whether prices are configured (a budget in USD needs them).
        :raises KeySyntaxError: no name, a limit below 1, a budget without a period (or a
            period without a budget), a USD budget without prices.
        :raises StorageError: the database failed.
        """
        if not name.strip():
            raise KeySyntaxError("a key needs a name (--name), e.g. the app or person using "
                                 "it.")
        for option, value in (("--rpm", rpm), ("--tpm", tpm), ("--max-parallel", max_parallel)):
            _positive(option, value)
        if (budget is None) != (period is None):
            raise KeySyntaxError("--budget and --period go together: e.g. --budget 5usd "
                                 "--period month.")
        if period is not None and period not in PERIODS:
            raise KeySyntaxError(f"--period {period!r}: write day, week or month.")
        if budget is not None and budget.unit == "usd" and not priced:
            raise KeySyntaxError(
                "a budget in USD needs prices: add [prices.\"Provider/model\"] tables "
                "(input and output, USD per million tokens) to chatplug.toml, or give the "
                "budget in tokens (e.g. 150000tokens).")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        key = VirtualKey("vk_" + secrets.token_hex(8), name.strip(), models, rpm, tpm,
                         max_parallel, budget, period, now,
                         now + expires_in if expires_in is not None else None)
        self.database.execute(
            f"INSERT INTO virtual_keys ({_COLUMNS}, key_hash) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.name, json.dumps(list(models)) if models is not None else None,
             rpm, tpm, max_parallel,
             int(budget.amount) if budget and budget.unit == "tokens" else None,
             budget.amount if budget and budget.unit == "usd" else None, period, now,
             key.expires_at, None, hash_key(secret)))
        return key, secret

    def keys(self) -> list[VirtualKey]:
        """Every key, revoked and expired ones too, with its hash: ``(hash, key)`` pairs
        are in :meth:`by_hash`."""
        return [_row(row) for row in self.database.execute(
            f"SELECT {_COLUMNS} FROM virtual_keys ORDER BY created_at")]

    def by_hash(self, digest: str | None = None) -> dict[str, VirtualKey]:
        """Keys by their hash (all of them, or the one with ``digest``)."""
        where, params = ("WHERE key_hash = ?", (digest,)) if digest else ("", ())
        rows = self.database.execute(
            f"SELECT key_hash, {_COLUMNS} FROM virtual_keys {where}", params)
        return {row[0]: _row(row[1:]) for row in rows}

    def spent(self, key: VirtualKey, now: float | None = None) -> float:
        """What ``key`` spent in its budget's current period (tokens or USD), from the
        usage ledger; 0 without a budget."""
        if key.budget is None or key.period is None:
            return 0.0
        since = period_start(key.period, time.time() if now is None else now)
        column = ("COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)"
                  if key.budget.unit == "tokens" else "COALESCE(cost_usd, 0)")
        rows = self.database.execute(
            f"SELECT SUM({column}) FROM usage WHERE key_id = ? AND ts >= ?", (key.id, since))
        return float(rows[0][0] or 0) if rows else 0.0

    def list(self) -> list[VirtualKey]:
        """Every key with its spend this period and its last use."""
        last = dict(self.database.execute(
            "SELECT key_id, MAX(ts) FROM usage WHERE key_id IS NOT NULL GROUP BY key_id"))
        return [replace(key, spent=self.spent(key), last_used=last.get(key.id))
                for key in self.keys()]

    def revoke(self, key_id: str) -> VirtualKey:
        """Revoke a key (from now on every replica refuses it); revoking twice keeps the
        first time.

        :raises UnknownKeyError: no key has that id.
        :raises StorageError: the database failed.
        """
        self.database.execute(
            "UPDATE virtual_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), key_id))
        rows = self.database.execute(f"SELECT {_COLUMNS} FROM virtual_keys WHERE id = ?",
                                     (key_id,))
        if not rows:
            raise UnknownKeyError(f"no virtual key has the id {key_id!r}; see the ids with "
                                 "chatplug gateway keys list.")
        return _row(rows[0])

