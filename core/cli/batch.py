"""``chatplug batch INPUT -o OUTPUT``: the command around :func:`chatplug.batch.run_batch`.

Exit status: 0 when every line of INPUT has a result in OUTPUT (error results
included); 1 when some could not get one (invalid lines without a usable
``custom_id`` under ``--skip-invalid``) or the batch could not run; 2 for
invalid lines (all reported, nothing sent) and usage errors; 130 on Ctrl-C,
after the summary (the same command resumes).  Progress and the summary go to
stderr.  This module imports nothing heavy until :func:`run` runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, TextIO

from .output import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, error_line

if TYPE_CHECKING:
    from ..batch.errors import BatchProblem
    from ..batch.runner import BatchSummary

__all__ = ["add_arguments", "run"]

EXIT_OK = 0

HELP = "run an OpenAI Batch file (JSONL) of chat completions; results to another JSONL"
DESCRIPTION = (
    "Send every request of INPUT, an OpenAI Batch file ({\"custom_id\", \"method\", \"url\", "
    "\"body\"} per line), and append one OpenAI batch output line per result to OUTPUT. "
    "The whole file is checked first; nothing is sent if a line is invalid. Running the "
    "same command again resumes: custom_ids already answered in OUTPUT are skipped."
)


def _concurrency(text: str) -> int:
    from ..batch.limits import MAX_CONCURRENCY

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_CONCURRENCY}, got {text!r}")
    return value


def _qps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected requests per second > 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the batch command's arguments to ``parser`` (its subparser)."""
    parser.add_argument("input", metavar="INPUT", help="the batch file (JSONL)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="where results are appended; an existing file is resumed")
    parser.add_argument("-p", "--provider", metavar="NAME",
                        help="provider, route or Provider/model for lines without body.model; "
                             "a body.model that names no provider is a model of it")
    parser.add_argument("-m", "--model", metavar="MODEL",
                        help="model for lines without body.model: gpt-4o-mini, "
                             "Provider/model or an alias (default: the default model)")
    parser.add_argument("--concurrency", type=_concurrency, default=8, metavar="N",
                        help="requests in flight at once (default 8)")
    parser.add_argument("--qps", type=_qps, default=None, metavar="X",
                        help="at most X requests start per second, all workers together")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="write invalid lines as errors and run the rest")
    parser.add_argument("--retry-errors", action="store_true",
                        help="send again the requests OUTPUT has error lines for, and "
                             "replace those lines")
    parser.add_argument("--quiet", action="store_true", help="no progress (the summary stays)")
    parser.add_argument("--config", metavar="PATH",
                        help="the config file (model aliases, default model; default "
                             "CHATPLUG_CONFIG, else chatplug.toml in chatplug's config "
                             "directory)")


def run(args: argparse.Namespace) -> int:
    """Run the batch the parsed ``args`` describe; the exit status."""
    from ..batch.errors import BatchInterrupted, BatchValidationError
    from ..batch.runner import run_batch
    from ..errors import ChatplugError

    err = sys.stderr
    try:
        if args.config is not None:
            from ..configfile import use_config

            use_config(args.config)  # worker processes read the same file
        summary = run_batch(
            args.input, args.output, concurrency=args.concurrency, qps=args.qps,
            progress=not args.quiet, provider=args.provider, model=args.model,
            skip_invalid=args.skip_invalid, retry_errors=args.retry_errors,
        )
    except BatchValidationError as exc:
        err.write(f"chatplug: error: {exc}\n")
        for problem in exc.problems:
            _problem(problem, err)
        return EXIT_USAGE
    except BatchInterrupted as exc:
        _summary(exc.summary, err)
        err.write("chatplug batch: interrupted; run the same command again to resume.\n")
        return EXIT_INTERRUPTED
    except ChatplugError as exc:
        err.write(f"chatplug: error: {error_line(exc)}\n")
        return EXIT_FAILURE
    for problem in summary.problems:
        _problem(problem, err, "written as an error" if problem.custom_id
                 else "written as an error, custom_id null")
    _summary(summary, err)
    return EXIT_OK if summary.complete else EXIT_FAILURE


def _problem(problem: BatchProblem, out: TextIO, note: str = "") -> None:
    first, *rest = str(problem).splitlines() or [""]
    out.write(f"  {first}{f' ({note})' if note else ''}\n")
    for line in rest:
        out.write(f"    {line.strip()}\n")


def _summary(summary: BatchSummary, out: TextIO) -> None:
    out.write(f"chatplug batch: {summary}\n")
    notes = []
    if summary.retried:
        notes.append(f"{summary.retried:,} error lines replaced (--retry-errors)")
    if summary.discarded:
        notes.append(f"{summary.discarded:,} torn or unreadable output lines discarded")
    if notes:
        out.write(f"chatplug batch: {'; '.join(notes)}\n")
    out.flush()
