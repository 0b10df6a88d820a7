"""``chatplug logs``: the latest logged exchanges (a table, or ``--json``), searched with
``-q`` and filtered by ``--cid``, ``-p``, ``-m``; ``logs show ID`` shows one exchange,
``logs path`` prints where the database is."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .output import Output, UsageError, print_json, table

if TYPE_CHECKING:
    from ..logs.store import Record

__all__ = ["add_arguments", "run"]

#: Characters of a prompt or reply shown in the table.
EXCERPT = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("list", "show", "path"), default="list",
                        help="list (default), show ID, or path")
    parser.add_argument("id", nargs="?", type=int, metavar="ID", help="with show: the record")
    parser.add_argument("-n", "--count", type=int, default=10, metavar="N",
                        help="how many of the latest exchanges (default 10; 0: all)")
    parser.add_argument("-q", "--query", metavar="TEXT",
                        help="only exchanges whose prompt or reply holds every word of TEXT")
    parser.add_argument("--cid", metavar="ID", help="only the conversation ID")
    parser.add_argument("-p", "--provider", help="only this provider")
    parser.add_argument("-m", "--model", help="only this model")
    parser.add_argument("--json", action="store_true", help="print JSON records")


def run(args: argparse.Namespace) -> int:
    from ..logs.store import LogStore

    store = LogStore()
    out = Output()
    if args.action == "path":
        out.write(f"{store.path}\n")
        return 0
    if args.action == "show":
        if args.id is None:
            raise UsageError("logs show takes the ID of a record (chatplug logs lists them)")
        record = store.get(args.id)
        if record is None:
            raise UsageError(f"no record {args.id} in {store.path}")
        if args.json:
            print_json(record.as_dict(), out)
        else:
            out.write(_details(record))
        return 0
    if args.id is not None:
        raise UsageError(f"an ID goes with `logs show`, not `logs {args.action}`")
    if args.count < 0:
        raise UsageError("-n takes 0 (all) or more")
    records = store.recent(args.count or None, query=args.query, conversation_id=args.cid,
                           provider=args.provider, model=args.model)
    if args.json:
        print_json([r.as_dict() for r in records], out)
        return 0
    if not records:
        out.write(f"Nothing logged{' matches' if _filtered(args) else ' yet'} "
                  f"({store.path}).\n")
        return 0
    rows = [("ID", "TIME", "CONVERSATION", "PROVIDER", "MODEL", "PROMPT", "REPLY")]
    for r in records:
        reply = _excerpt(r.reply or "") if r.error is None else f"[{r.error_code or 'error'}]"
        rows.append((str(r.id), r.time[:19].replace("T", " "), r.conversation_id,
                     r.provider or "-", r.model or "-", _excerpt(r.prompt or ""), reply))
    out.write(table(rows))
    return 0


def _filtered(args: argparse.Namespace) -> bool:
    return any((args.query, args.cid, args.provider, args.model))


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= EXCERPT else line[: EXCERPT - 1] + "…"


def _details(r: Record) -> str:
    usage = ("-" if r.total_tokens is None and r.prompt_tokens is None else
             f"{r.prompt_tokens} prompt + {r.completion_tokens} completion = "
             f"{r.total_tokens} tokens")
    head = [
        f"#{r.id}  {r.time}  conversation {r.conversation_id}",
        f"provider: {r.provider}{f' (route {r.route})' if r.route else ''}   model: {r.model}"
        f"   stream: {'yes' if r.stream else 'no'}",
        f"finish:   {r.finish_reason or '-'}   duration: "
        f"{'-' if r.duration_s is None else f'{r.duration_s:.2f} s'}   attempts: "
        f"{r.attempts or '-'}   usage: {usage}",
    ]
    if r.options:
        head.append(f"options:  {json.dumps(r.options, ensure_ascii=False, default=str)}")
    if r.error:
        head.append(f"error:    {r.error}")
    parts = ["\n".join(head)]
    if r.system:
        parts.append(f"--- system\n{r.system}")
    parts.append(f"--- prompt\n{r.prompt or ''}")
    if r.reasoning:
        parts.append(f"--- reasoning\n{r.reasoning}")
    parts.append(f"--- reply\n{r.reply or ''}")
    if r.tool_calls:
        parts.append("--- tool calls\n" + json.dumps(r.tool_calls, indent=2, ensure_ascii=False))
    return "\n".join(parts) + "\n"
