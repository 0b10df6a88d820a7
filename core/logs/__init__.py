"""The logs database of exchanges: what ``chatplug chat`` logs and ``chatplug logs`` reads.

- :class:`LogStore`, :class:`Record`: the SQLite file and its rows;
- :class:`LogObserver`: an observer an application registers to log its own
  completions (the library never logs by itself).
"""

from __future__ import annotations

from .observer import LogObserver
from .store import LogStore, Record, default_path, new_conversation_id

__all__ = ["LogObserver", "LogStore", "Record", "default_path", "new_conversation_id"]
