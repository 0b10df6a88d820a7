"""What every command checks in the environment before it runs: a misspelled
``CHATPLUG_*`` variable (``CHATPLUG_TIMOUT``) is reported once on stderr with the
closest name chatplug reads, instead of being ignored without a word.

The library finds such names (:func:`chatplug.settings.warn_unknown_variables`) and logs
each once per process; the CLI shows that log on stderr as its own warning lines.
"""

from __future__ import annotations

import logging
import os

from ..naming import ENVIRONMENT_ONLY, PREFIX, env_name
from .output import warn

__all__ = ["report_unknown_variables"]


class _Warnings(logging.Handler):
    """The settings' warnings as ``chatplug: warning: ...`` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


def report_unknown_variables() -> None:
    """Warn of each misspelled ``CHATPLUG_*`` variable, once per process (the library's
    own check, when the registry loads its settings later, finds them already told)."""
    logger = logging.getLogger("chatplug.settings")
    if not any(isinstance(h, _Warnings) for h in logger.handlers):
        logger.addHandler(_Warnings(logging.WARNING))
        logger.propagate = False  # `chatplug serve`'s logging would print it a second time
    if not any(name.upper().startswith(PREFIX) for name in os.environ):
        return
    from .. import registry
    from ..errors import ChatplugError

    try:
        names = [provider.name for provider in registry.providers()]
    except ChatplugError:
        names = []  # a broken plugin is the command's to report
    # The usual variables (a provider's URL and key, CHATPLUG_HOME) are known without the
    # settings model: a command pays for importing pydantic only when another is set.
    plain = {env_name(name, what) for name in names for what in ("URL", "API_KEY")}
    plain.update(ENVIRONMENT_ONLY)
    if all(name.upper() in plain for name in os.environ if name.upper().startswith(PREFIX)):
        return
    from ..settings import warn_unknown_variables

    warn_unknown_variables(os.environ, names)
