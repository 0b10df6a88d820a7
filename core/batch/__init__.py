"""Batch completions on one machine: OpenAI Batch JSONL in, OpenAI batch output out.

::

    from chatplug.batch import run_batch

    summary = run_batch("requests.jsonl", "results.jsonl", concurrency=16, qps=10)
    summary.succeeded, summary.failed, summary.skipped, summary.total_tokens

The command is ``chatplug batch requests.jsonl -o results.jsonl``; on a Ray
cluster use :class:`chatplug.ray.ChatCompletions`.  See docs/scaling.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import BatchFileError, BatchInterrupted, BatchProblem, BatchValidationError
    from .progress import Progress
    from .runner import BatchSummary, run_batch

__all__ = ["BatchFileError", "BatchInterrupted", "BatchProblem", "BatchSummary",
           "BatchValidationError", "Progress", "run_batch"]

_HOMES = {"BatchFileError": "errors", "BatchInterrupted": "errors", "BatchProblem": "errors",
          "BatchValidationError": "errors", "Progress": "progress", "BatchSummary": "runner",
          "run_batch": "runner"}


def __getattr__(name: str) -> Any:
    # Imported on use: `chatplug --help` builds the batch command's parser from
    # chatplug.cli.batch without loading the runner.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'chatplug.batch' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{home}", __name__), name)
