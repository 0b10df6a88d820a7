"""How far a batch has come, and showing it on stderr.

:class:`Progress` is a snapshot, handed to a reporter about ten times a
second and once at the end.  ``run_batch(progress=True)`` (what ``chatplug
batch`` does without ``--quiet``) picks the reporter for stderr: a ``tqdm``
bar when it is a terminal (tqdm is imported only then), else a plain line at
most every :data:`LINE_INTERVAL` seconds, so logs of a long job stay short.
Pass a callable instead to receive the snapshots yourself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

__all__ = ["LINE_INTERVAL", "Progress", "Reporter", "reporter_for"]

#: Seconds between two plain progress lines (stderr not a terminal).
LINE_INTERVAL = 5.0


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running batch.

    :ivar done: requests answered in this run (errors included).
    :ivar failed: of those, how many got an error.
    :ivar total: requests this run has to answer (lines already answered excluded).
    :ivar skipped: lines already answered by an earlier run.
    :ivar elapsed_s: seconds since the run started sending.
    """

    done: int
    failed: int
    total: int
    skipped: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Requests answered per second so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds until the rest is answered at the rate so far (None before any answer)."""
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        """``1,200/10,000 done, 3 errors, 240.1/s, ETA 37 s``."""
        eta = self.eta_s
        return (f"{self.done:,}/{self.total:,} done, {self.failed:,} error"
                f"{'' if self.failed == 1 else 's'}, {self.rate:,.1f}/s, ETA "
                + ("?" if eta is None else f"{eta:,.0f} s"))


class Reporter(Protocol):
    def update(self, progress: Progress) -> None: ...

    def close(self, progress: Progress) -> None: ...


class _Silent:
    def update(self, progress: Progress) -> None:
        pass

    def close(self, progress: Progress) -> None:
        pass


class _Callback:
    def __init__(self, callback: Callable[[Progress], None]) -> None:
        self._callback = callback

    def update(self, progress: Progress) -> None:
        self._callback(progress)

    def close(self, progress: Progress) -> None:
        self._callback(progress)


class _Lines:
    """A plain line now (what is to be done), then at most one every ``interval`` seconds."""

    def __init__(self, stream: TextIO, interval: float = LINE_INTERVAL) -> None:
        self._stream = stream
        self._interval = interval
        self._last: float | None = None

    def update(self, progress: Progress) -> None:
        now = time.monotonic()
        if self._last is None:
            self._last = now
            skipped = (f" ({progress.skipped:,} already answered)" if progress.skipped
                       else "")
            plural = "" if progress.total == 1 else "s"
            self._write(f"chatplug batch: {progress.total:,} request{plural} to send{skipped}")
        elif now - self._last >= self._interval:
            self._last = now
            self._write(f"chatplug batch: {progress.line()}")

    def close(self, progress: Progress) -> None:
        pass  # the summary follows

    def _write(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()


class _Bar:
    """tqdm on a terminal: done/total, errors, rate, ETA."""

    def __init__(self, stream: TextIO) -> None:
        from tqdm import tqdm

        class Bar(tqdm):  # type: ignore[type-arg]
            monitor_interval = 0  # no monitor thread left behind

        self._bar: Any = None
        self._type = Bar
        self._stream = stream
        self._failed = -1

    def update(self, progress: Progress) -> None:
        if self._bar is None:
            self._bar = self._type(total=progress.total, unit="req", file=self._stream,
                                   desc="chatplug batch", dynamic_ncols=True, smoothing=0.1)
        bar = self._bar
        if progress.failed != self._failed:
            self._failed = progress.failed
            bar.set_postfix_str(f"{progress.failed:,} errors", refresh=False)
        if progress.done > bar.n:
            bar.update(progress.done - bar.n)

    def close(self, progress: Progress) -> None:
        self.update(progress)
        self._bar.close()


def reporter_for(progress: bool | Callable[[Progress], None],
                 stream: TextIO | None = None) -> Reporter:
    """The reporter ``progress`` asks for: none (False), stderr (True), or a callable's."""
    if callable(progress):
        return _Callback(progress)
    if not progress:
        return _Silent()
    stream = stream or sys.stderr
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if terminal:
        try:
            return _Bar(stream)
        except ImportError:
            pass  # tqdm missing: plain lines still work
    return _Lines(stream)
