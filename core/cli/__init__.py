"""The ``chatplug`` command: one module per command (see :mod:`chatplug.cli.commands`).

Only this package talks to the terminal.  A command module has
``add_arguments(parser)`` and ``run(args) -> int``; it raises :class:`UsageError`
for a malformed command line and lets chatplug's errors through, which ``main``
prints as one line.
"""

from __future__ import annotations

from .commands import COMMANDS, main
from .output import UsageError

__all__ = ["COMMANDS", "UsageError", "main"]
