"""Running a batch file on this machine: :func:`run_batch`.

1. The output is opened and locked, and what it already holds is read
   (:class:`~chatplug.batch.output.OutputFile`).
2. The whole input is checked, line by line, with the library's own validation;
   any invalid line stops the batch before anything is sent
   (:class:`BatchValidationError`, every problem with its line number), unless
   ``skip_invalid``.
3. The output is repaired (torn last line, ``retry_errors``), then ``concurrency``
   worker threads take lines from the input (read again, streamed) and send
   them, at most ``qps`` starts a second across all of them.  Each result is
   appended as it arrives.

Threads, not asyncio: the sync API is thread-safe and the registry's transport
pools 64 connections per host, and the async API would run each call on a
worker thread all the same, one event-loop hop later.

Ctrl-C: no new request starts, the ones in flight are cancelled (their sockets
shut; a route's call, which cannot be cancelled, is abandoned) and not written,
and :class:`BatchInterrupted` carries the summary after at most
:data:`GRACE_S` seconds.  Running the same batch again resumes it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ChatplugError
from .errors import BatchFileError, BatchInterrupted, BatchProblem, BatchValidationError
from .execute import Outcome, Slot, execute, new_request_id
from .inputs import LINE_ERRORS, Request, Resolver, Skipped, check, scan
from .limits import RateLimiter, check_concurrency, check_qps
from .output import OutputFile, result_line
from .progress import Progress, Reporter, reporter_for

if TYPE_CHECKING:
    from ..plugins.registry import Registry

__all__ = ["GRACE_S", "BatchSummary", "run_batch"]

#: Seconds Ctrl-C waits for requests in flight to end.
GRACE_S = 2.0
#: Seconds between two looks of the main thread at the workers (progress, fsync, Ctrl-C).
TICK_S = 0.1


@dataclass(frozen=True)
class BatchSummary:
    """What a run did.

    :ivar succeeded: requests answered with a completion in this run.
    :ivar failed: requests answered with an error in this run (invalid lines
        written as errors under ``skip_invalid`` included).
    :ivar skipped: lines already answered in the output by an earlier run.
    :ivar invalid: invalid lines without a usable ``custom_id`` (torn JSON, none, a
        duplicate), written as error lines with ``custom_id`` null and the ``line``
        number in the error; reported, never sent.
    :ivar pending: requests not answered because the run was interrupted.
    :ivar total_tokens: tokens used, from the usage the servers reported.
    :ivar duration_s: seconds the run took, checking the input included.
    :ivar retried: error lines removed from the output to be sent again (``retry_errors``).
    :ivar discarded: lines of the output that were not whole results (a line torn
        by a crash, unreadable or repeated lines), removed on resume.
    :ivar problems: the invalid lines ``skip_invalid`` let through, with their line
        numbers (each written as an error line).
    """

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    invalid: int = 0
    pending: int = 0
    total_tokens: int = 0
    duration_s: float = 0.0
    interrupted: bool = False
    retried: int = 0
    discarded: int = 0
    problems: tuple[BatchProblem, ...] = ()

    @property
    def complete(self) -> bool:
        """Every line of the input has a result in the output (errors count as results)."""
        return not self.interrupted and not self.pending

    def __str__(self) -> str:
        parts = [f"{self.succeeded:,} succeeded", f"{self.failed:,} failed",
                 f"{self.skipped:,} skipped (already answered)"]
        if self.invalid:
            parts.append(f"{self.invalid:,} invalid lines written with custom_id null")
        if self.pending:
            parts.append(f"{self.pending:,} not sent")
        parts.append(f"{self.total_tokens:,} tokens")
        parts.append(f"{self.duration_s:,.1f} s")
        return ", ".join(parts)


def run_batch(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    concurrency: int = 8,
    qps: float | None = None,
    registry: Registry | None = None,
    progress: bool | Callable[[Progress], None] = True,
    provider: str | None = None,
    model: str | None = None,
    skip_invalid: bool = False,
    retry_errors: bool = False,
) -> BatchSummary:
    """Run every request of the OpenAI Batch file ``input_path``; results go to ``output_path``.

    Resumes: lines whose ``custom_id`` already has a result in the output are
    skipped (error results too, unless ``retry_errors``, which sends them again
    and replaces their lines).  One failed request never stops the others.

    :param concurrency: requests in flight at once (1 to 1024; above 64 per host the
        transport's connection pool no longer keeps every connection alive).
    :param qps: at most this many requests start per second, all workers together.
    :param registry: the registry to resolve ``body.model`` with (default: chatplug's).
    :param progress: progress on stderr (a bar on a terminal, else a line every 5 s),
        ``False`` for none, or a callable receiving :class:`Progress` snapshots.
    :param provider: the provider, route or ``Provider/model`` of lines without
        ``body.model``; a ``body.model`` naming no provider is a model of it.
    :param model: the model of lines without ``body.model``.
    :param skip_invalid: write invalid lines as errors and run the rest, instead
        of raising :class:`BatchValidationError`.
    :raises BatchValidationError: invalid lines (all of them in ``problems``); nothing sent.
    :raises BatchFileError: the input cannot be read, the output cannot be
        written, or another run is writing it.
    :raises BatchInterrupted: Ctrl-C; it carries the :class:`BatchSummary`.
    :raises InvalidRequestError: ``concurrency`` or ``qps`` out of range.
    :raises ConfigurationError: a setting is invalid.
    """
    started = time.monotonic()
    concurrency = check_concurrency(concurrency)
    rate = check_qps(qps)
    if registry is None:
        from .. import registry as default_registry

        registry = default_registry
    source, target = Path(input_path), Path(output_path)
    if target.exists() and source.exists() and os.path.samefile(source, target):
        raise BatchFileError(f"the output {target} is the input file; write the results "
                             "to another file.")
    resolver = Resolver(registry, provider, model)
    output = OutputFile(target)
    state = output.open()
    ids: dict[str, int] = {}
    try:
        problems, to_send, skipped = _validate(source, resolver, state.answered(retry_errors),
                                               ids)
        if problems and not skip_invalid:
            raise BatchValidationError(str(source), problems, len(ids) + sum(
                1 for p in problems if p.custom_id is None))
    except BaseException as exc:
        output.abandon()  # nothing was sent: leave no empty output behind
        if isinstance(exc, KeyboardInterrupt):
            raise BatchInterrupted(BatchSummary(duration_s=time.monotonic() - started,
                                                interrupted=True)) from None
        raise
    try:
        discarded = state.discarded + state.duplicates + int(state.torn)
        retried = output.repair(state, ids if retry_errors else ())
        del ids
        reporter = reporter_for(progress)
        if to_send:
            run = _Run(scan(source, resolver, state.succeeded | state.failed, {}), output,
                       concurrency, RateLimiter(rate) if rate else None, reporter, to_send,
                       skipped)
            summary = run.start(started)
        else:  # everything is answered: no second reading of the input
            done = Progress(done=0, failed=0, total=0, skipped=skipped, elapsed_s=0.0)
            reporter.update(done)
            reporter.close(done)
            summary = BatchSummary(skipped=skipped, duration_s=time.monotonic() - started)
        return replace(summary, retried=retried, discarded=discarded, problems=tuple(problems))
    finally:
        output.close()


def _validate(source: Path, resolver: Resolver, answered: set[str],
              ids: dict[str, int]) -> tuple[list[BatchProblem], int, int]:
    """Every problem of the input, how many results the run is to write, and how
    many lines are already answered."""
    problems: list[BatchProblem] = []
    to_send = skipped = 0
    for entry in scan(source, resolver, answered, ids):
        if isinstance(entry, Request):
            to_send += 1  # an invalid one too: skip_invalid writes it as an error
            try:
                check(entry)
            except LINE_ERRORS as exc:
                problems.append(BatchProblem(entry.line, entry.custom_id, exc.code, str(exc)))
        elif isinstance(entry, BatchProblem):
            problems.append(entry)
            to_send += 1  # written as an error, with or without its custom_id
        else:
            skipped += 1
    return problems, to_send, skipped


class _Run:
    """The sending phase: worker threads, the main thread watching them."""

    def __init__(self, entries: Iterator[Request | Skipped | BatchProblem], output: OutputFile,
                 concurrency: int, limiter: RateLimiter | None, reporter: Reporter,
                 total: int, skipped: int) -> None:
        self._entries = entries
        self._output = output
        self._limiter = limiter
        self._reporter = reporter
        self._total = total
        self._skipped = skipped
        self._slots = [Slot() for _ in range(concurrency)]
        self._feed = threading.Lock()
        self._count = threading.Lock()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._running = 0
        self._finished = threading.Event()
        self._sending_since = time.monotonic()
        self.succeeded = self.failed = self.invalid = self.tokens = 0

    def start(self, started: float) -> BatchSummary:
        """Run to the end; the summary of what was sent.

        :raises BatchInterrupted: Ctrl-C.
        :raises BatchFileError: writing the output failed.
        """
        from ..calls.workers import WorkerPool

        self._sending_since = time.monotonic()
        pool = WorkerPool(len(self._slots), name="chatplug-batch")
        self._running = len(self._slots)
        for slot in self._slots:
            pool.submit(self._work, slot)
        interrupted = False
        try:
            # Event.wait, unlike a join, lets Ctrl-C through at once.
            while not self._finished.wait(TICK_S):
                if self._failure is not None:
                    self._interrupt()
                    break
                self._output.sync_if_due()
                self._reporter.update(self._progress())
        except KeyboardInterrupt:
            interrupted = True
            self._interrupt()
        self._reporter.close(self._progress())
        if self._failure is not None:
            if isinstance(self._failure, ChatplugError):
                raise self._failure
            raise BatchFileError(f"the batch stopped: {type(self._failure).__name__}: "
                                 f"{self._failure}") from self._failure
        with self._count:
            done = self.succeeded + self.failed + self.invalid
            summary = BatchSummary(
                succeeded=self.succeeded, failed=self.failed, skipped=self._skipped,
                invalid=self.invalid, pending=max(self._total - done, 0) if interrupted else 0,
                total_tokens=self.tokens, duration_s=time.monotonic() - started,
                interrupted=interrupted,
            )
        if interrupted:
            raise BatchInterrupted(summary)
        return summary

    def _progress(self) -> Progress:
        return Progress(done=self.succeeded + self.failed + self.invalid,
                        failed=self.failed + self.invalid,
                        total=self._total, skipped=self._skipped,
                        elapsed_s=time.monotonic() - self._sending_since)

    def _interrupt(self) -> None:
        """Stop starting requests, cancel those in flight, wait at most GRACE_S for them."""
        self._stop.set()
        for slot in self._slots:
            slot.cancel()
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            try:
                if self._finished.wait(0.02):
                    break
            except KeyboardInterrupt:
                break  # a second Ctrl-C: stop waiting

    def _work(self, slot: Slot) -> None:
        try:
            while not self._stop.is_set():
                with self._feed:
                    entry = next(self._entries, None)
                if entry is None:
                    return
                if isinstance(entry, Request):
                    if self._limiter is not None and not self._limiter.wait(self._stop):
                        return
                    outcome = execute(entry, slot)
                    if outcome is None:
                        return  # cancelled: not written, sent again by the next run
                    self._record(outcome)
                elif isinstance(entry, BatchProblem):
                    error: dict[str, Any] = {"code": entry.code, "message": entry.message}
                    if entry.custom_id is None:
                        error["line"] = entry.line  # what finds it in the input
                    self._record(Outcome(entry.custom_id, new_request_id(), error=error))
        except BaseException as exc:  # a full disk, a bug: stop the run and report it
            self._failure = exc
            self._stop.set()
        finally:
            with self._count:
                self._running -= 1
                if not self._running:
                    self._finished.set()

    def _record(self, outcome: Outcome) -> None:
        if not self._output.append(result_line(outcome)):
            return  # the run ended (Ctrl-C grace over) while this call finished
        with self._count:
            if outcome.error is None:
                self.succeeded += 1
                self.tokens += outcome.total_tokens
            elif outcome.custom_id is None:
                self.invalid += 1
            else:
                self.failed += 1

