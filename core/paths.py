"""Where chatplug keeps its own files: the logs database and the keys file.

``CHATPLUG_HOME``, when set, holds both.  Otherwise they follow the XDG base
directory specification: data (``logs.db``) in ``$XDG_DATA_HOME/chatplug``
(default ``~/.local/share/chatplug``), configuration (``keys.json``) in
``$XDG_CONFIG_HOME/chatplug`` (default ``~/.config/chatplug``).  Both are read
from the environment only (not ``.env``): they say where the other files are.

Files holding prompts or keys are private: directories are created with mode
0700 and files with mode 0600, whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["HOME_VARIABLE", "config_dir", "data_dir", "private_dir"]

HOME_VARIABLE = "CHATPLUG_HOME"
APP = "chatplug"


def _home() -> Path | None:
    value = os.environ.get(HOME_VARIABLE, "").strip()
    return Path(value).expanduser().absolute() if value else None


def _xdg(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "").strip()
    # The specification says to ignore a relative path in these variables.
    base = Path(value) if value and os.path.isabs(value) else Path.home() / default
    return base / APP


def data_dir() -> Path:
    """``$CHATPLUG_HOME``, else ``$XDG_DATA_HOME/chatplug`` (``~/.local/share/chatplug``)."""
    return _home() or _xdg("XDG_DATA_HOME", ".local/share")


def config_dir() -> Path:
    """``$CHATPLUG_HOME``, else ``$XDG_CONFIG_HOME/chatplug`` (``~/.config/chatplug``)."""
    return _home() or _xdg("XDG_CONFIG_HOME", ".config")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed; a new last directory gets mode 0700.

    :raises OSError: it cannot be created.
    """
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first
            path.mkdir(mode=0o700)
    return path
