"""What can stop a batch as a whole (a single request's failure never does).

- :class:`BatchValidationError`: the input has invalid lines; nothing was sent.
- :class:`BatchFileError`: the input cannot be read, or the output cannot be
  written or is in use by another run.
- :class:`BatchInterrupted`: Ctrl-C; carries the summary of what was done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ChatplugError, InvalidRequestError

if TYPE_CHECKING:
    from .runner import BatchSummary

__all__ = ["BatchFileError", "BatchInterrupted", "BatchProblem", "BatchValidationError"]


@dataclass(frozen=True)
class BatchProblem:
    """One invalid input line.

    :ivar line: the 1-based line number (``None`` for a row that has no line, in Ray).
    :ivar custom_id: the line's ``custom_id`` if it had a usable one.
    :ivar code: the :attr:`ChatplugError.code` of the failure (``invalid_request``...).
    :ivar message: what is wrong and what to do.
    """

    line: int | None
    custom_id: str | None
    code: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "row"
        return f"{where}: {self.message}"


class BatchValidationError(InvalidRequestError):
    """The input file has invalid lines (every one is in ``problems``); nothing was sent.

    Fix the lines, or pass ``skip_invalid=True`` (``--skip-invalid``) to write them
    as errors and run the rest.
    """

    code = "invalid_batch"

    def __init__(self, path: str, problems: list[BatchProblem], total: int) -> None:
        count = len(problems)
        super().__init__(
            f"{path}: {count} of {total} line{'s' if total != 1 else ''} "
            f"{'is' if count == 1 else 'are'} invalid; nothing was sent. Fix "
            f"{'it' if count == 1 else 'them'}, or pass --skip-invalid to write "
            f"{'it' if count == 1 else 'them'} as errors and run the rest."
        )
        self.path = path
        self.problems = problems
        self.total = total


class BatchFileError(ChatplugError):
    """The input cannot be read, or the output cannot be written (or another run holds it)."""

    code = "batch_file_error"


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the batch: requests in flight were cancelled and not written.

    ``summary`` says what was done; running the same batch again resumes it.
    """

    def __init__(self, summary: BatchSummary) -> None:
        super().__init__("the batch was interrupted; run it again to resume")
        self.summary = summary
