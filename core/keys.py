"""API keys saved with ``chatplug keys set``: the keys file.

``keys.json`` lives in :func:`chatplug.paths.config_dir` (``$CHATPLUG_HOME``,
else ``$XDG_CONFIG_HOME/chatplug``), mode 0600: one JSON object mapping a
provider name to its key.  The settings read it after the environment and
``.env`` (:mod:`chatplug.settings`), so a variable always wins over a saved key.
Names are matched as settings match them (:func:`chatplug.naming.provider_slug`):
``openai`` and ``OpenAI`` are one entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigurationError, InvalidRequestError, StorageError
from .filelock import locked
from .naming import provider_slug
from .paths import config_dir, private_dir

__all__ = ["FILENAME", "check_key", "key_names", "keys_path", "load_keys", "remove_key",
           "save_key"]

FILENAME = "keys.json"


def keys_path() -> Path:
    """Where the keys file is (it may not exist)."""
    return config_dir() / FILENAME


def load_keys(path: Path | None = None) -> dict[str, str]:
    """``{provider name: key}`` from the keys file; ``{}`` when there is none.

    :raises ConfigurationError: the file cannot be read or is not a JSON object of
        strings (the message names the file and what to do).
    """
    path = path or keys_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"cannot read the keys file {path}: {exc}. Fix its permissions, or remove it "
            "and save the keys again with `chatplug keys set PROVIDER`."
        ) from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigurationError(
            f"the keys file {path} is not valid JSON ({exc}). Fix it, or remove it and save "
            "the keys again with `chatplug keys set PROVIDER`."
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigurationError(
            f"the keys file {path} must hold one JSON object of provider names to keys "
            "(strings). Fix it, or remove it and save the keys again with "
            "`chatplug keys set PROVIDER`."
        )
    return data


def check_key(key: str) -> str:
    """``key`` without surrounding whitespace.

    :raises InvalidRequestError: it is empty, or holds a line break or another
        control character (a key pasted with the next line in it).
    """
    key = key.strip()
    if not key:
        raise InvalidRequestError("the key is empty; nothing was saved.")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidRequestError("the key contains a line break or another control "
                                  "character; copy it again without it. Nothing was saved.")
    return key


def save_key(provider: str, key: str, path: Path | None = None) -> Path:
    """Save ``key`` for ``provider``, replacing the one saved under the same settings
    name; the file is written whole (never half) with mode 0600.  Returns its path.

    :raises InvalidRequestError: an empty key or one with a control character.
    :raises ConfigurationError: the existing file is damaged.
    :raises StorageError: the file cannot be written, or another process kept it locked
        (:mod:`chatplug.filelock`).
    """
    try:
        key = check_key(key)
    except InvalidRequestError as exc:
        exc.provider = provider
        raise
    path = path or keys_path()
    with _locked(path):
        keys = {name: value for name, value in load_keys(path).items()
                if provider_slug(name) != provider_slug(provider)}
        keys[provider] = key
        _write(path, keys)
    return path


def remove_key(provider: str, path: Path | None = None) -> bool:
    """Forget the key saved for ``provider``; False if there was none.

    :raises ConfigurationError: the existing file is damaged.
    :raises StorageError: the file cannot be written.
    """
    path = path or keys_path()
    with _locked(path):
        keys = load_keys(path)
        kept = {name: value for name, value in keys.items()
                if provider_slug(name) != provider_slug(provider)}
        if len(kept) == len(keys):
            return False
        _write(path, kept)
    return True


def key_names(path: Path | None = None) -> list[str]:
    """The provider names that have a saved key, sorted (never any part of a key).

    :raises ConfigurationError: the file is damaged.
    """
    return sorted(load_keys(path), key=str.lower)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One read-modify-write of the keys file at a time: two ``chatplug keys set`` at
    once would otherwise each write the file they read, and one key would be lost."""
    try:
        private_dir(path.parent)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    with locked(path):
        yield


def _unwritable(path: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot write the keys file {path}: {exc}. Check that its "
                        "directory is writable, or set CHATPLUG_HOME elsewhere.")


def _write(path: Path, keys: dict[str, str]) -> None:
    try:
        directory = private_dir(path.parent)
        # mkstemp creates the file with mode 0600; the rename makes the new content
        # appear at once, so a reader never sees half a file.
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".keys-",
                                                 suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(keys, file, indent=2, sort_keys=True)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:
        raise _unwritable(path, exc) from None
