"""``chatplug gateway keys``: the gateway's virtual keys.

``create --name NAME [--models P,...] [--rpm N] [--tpm N] [--max-parallel N]
[--budget AMOUNT --period day|week|month] [--expires DURATION]`` prints the new key once
(stdout; its id and limits on stderr); ``list [--json]`` shows every key's id, name,
limits, spend this period, last use, expiry and state, never a key; ``revoke ID``.
They act on the gateway's database (``CHATPLUG_SERVER_DATABASE_URL``, else ``gateway.db``
in chatplug's data directory); a running gateway sees the change within
``CHATPLUG_SERVER_KEYS_REFRESH`` seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import TYPE_CHECKING

from .output import Output, UsageError, note, print_json, table, whole_number

if TYPE_CHECKING:
    from ..accounting.keys import VirtualKey

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a key (shown once)")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--models", metavar="PATTERN,...",
                        help="models it may use: Provider/model, Provider/*, an alias, a "
                             "route (default: any)")
    create.add_argument("--rpm", type=whole_number, metavar="N", help="requests per minute")
    create.add_argument("--tpm", type=whole_number, metavar="N", help="tokens per minute")
    create.add_argument("--max-parallel", type=whole_number, metavar="N",
                        help="requests in flight at once")
    create.add_argument("--budget", metavar="AMOUNT",
                        help="per period: 150000tokens, or 5usd (needs [prices])")
    create.add_argument("--period", choices=("day", "week", "month"),
                        help="the budget's period (UTC calendar)")
    create.add_argument("--expires", metavar="DURATION", help="30s, 15m, 8h or 30d")
    create.add_argument("--json", action="store_true", help="print the key and its record "
                                                            "as JSON")
    listing = actions.add_parser("list", help="every key, its limits, spend and last use")
    listing.add_argument("--json", action="store_true", help="as JSON")
    revoke = actions.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("id", metavar="ID", help="the key's id (vk_...)")


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _limits(key: VirtualKey) -> str:
    parts = [f"{name} {value}" for name, value in
             (("rpm", key.rpm), ("tpm", key.tpm), ("parallel", key.max_parallel))
             if value is not None]
    if key.budget is not None:
        parts.append(f"budget {key.budget}/{key.period}")
    return ", ".join(parts) or "-"


def _state(key: VirtualKey, now: float) -> str:
    if key.revoked_at is not None:
        return "revoked"
    return "expired" if not key.usable(now) else "active"


def _spent(key: VirtualKey) -> str:
    if key.budget is None:
        return "-"
    return f"{int(key.spent)}" if key.budget.unit == "tokens" else f"{key.spent:.4f}usd"


def run(args: argparse.Namespace) -> int:
    from ..accounting.keys import KeyStore
    from ..accounting.keyspec import KeySyntaxError, parse_budget, parse_duration, parse_models
    from ..configfile import load_config
    from ..gateway_settings import load_server_settings

    out = Output()
    # The gateway's database as the gateway sees it (the environment, then .env).
    database = load_server_settings().database()
    try:
        store = KeyStore(database)
        if args.keys_command == "create":
            try:
                key, secret = store.create(
                    args.name, models=parse_models(args.models) if args.models else None,
                    rpm=args.rpm, tpm=args.tpm, max_parallel=args.max_parallel,
                    budget=parse_budget(args.budget) if args.budget else None,
                    period=args.period,
                    expires_in=parse_duration(args.expires) if args.expires else None,
                    priced=bool(args.budget and load_config().prices))
            except KeySyntaxError as exc:
                raise UsageError(str(exc)) from None
            if args.json:
                print_json({**key.as_dict(), "key": secret}, out)
            else:
                out.write(secret + "\n")
                note(f"created {key.id} ({key.name}; {_limits(key)}); the key above is "
                     "shown only now: keep it.")
        elif args.keys_command == "list":
            keys = store.list()
            if args.json:
                print_json([key.as_dict() for key in keys], out)
            else:
                now = time.time()
                out.write(table([("ID", "NAME", "MODELS", "LIMITS", "SPENT", "LAST USE",
                                  "EXPIRES", "STATE")] + [
                    (k.id, k.name, ",".join(k.models) if k.models else "any", _limits(k),
                     _spent(k), _when(k.last_used), _when(k.expires_at), _state(k, now))
                    for k in keys]))
        else:
            key = store.revoke(args.id)
            note(f"revoked {key.id} ({key.name}); running gateways refuse it within "
                 "seconds.")
    finally:
        database.close()
    return 0
