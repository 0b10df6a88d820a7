"""``chatplug.toml``: the config file a team versions (model aliases, the default model,
prices).

Where it is: ``--config PATH`` (``serve`` and ``batch`` set ``CHATPLUG_CONFIG``, so
every worker process reads the same file), else ``$CHATPLUG_CONFIG``, else
``chatplug.toml`` in chatplug's config directory (``$CHATPLUG_HOME``, else
``$XDG_CONFIG_HOME/chatplug``).  A missing file is an empty config; a file that
exists but cannot be read or parsed is a :class:`~chatplug.errors.ConfigurationError`
naming the file (and the line, for bad TOML).  One format, read with ``tomllib``
(``tomli`` on Python 3.10)::

    default_model = "fast"

    [models]
    fast = "OpenAI/gpt-4o-mini"
    smart = ["OpenAI/gpt-4.1", "GravityEngine"]     # a list is a route

    [prices."OpenAI/gpt-4o-mini"]                   # USD per million tokens
    input = 0.15
    output = 0.60
    cached = 0.075

Environment variables win over the file (``CHATPLUG_MODELS``, ``CHATPLUG_DEFAULT_MODEL``);
that merge is the model catalog's job (:mod:`chatplug.plugins.catalog`), not this module's.
:func:`store_default_model` rewrites the one ``default_model`` line (``chatplug models
default NAME``), leaving the rest of the file, comments included, as it was.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .filelock import locked
from .paths import config_dir, private_dir

__all__ = ["CONFIG_FILE", "CONFIG_VARIABLE", "ConfigFile", "Price", "config_path",
           "load_config", "parse_models", "parse_prices", "store_default_model", "use_config"]

#: The variable naming the config file (``--config PATH`` sets it for worker processes).
CONFIG_VARIABLE = "CHATPLUG_CONFIG"
#: The file's name in chatplug's config directory.
CONFIG_FILE = "chatplug.toml"

_PRICE_KINDS = ("input", "output", "cached", "cache_creation", "reasoning")


@dataclass(frozen=True)
class Price:
    """USD per million tokens of one model (or ``Provider/*``).  ``cached`` (prompt tokens
    read from a cache), ``cache_creation`` and ``reasoning`` default to ``input``,
    ``input`` and ``output``: a price list that leaves them out never prices them at 0."""

    input: float
    output: float
    cached: float | None = None
    cache_creation: float | None = None
    reasoning: float | None = None


@dataclass(frozen=True)
class ConfigFile:
    """What ``chatplug.toml`` holds, checked.  ``path`` is where it was looked for
    (it may not exist); ``data`` is the whole parsed table, for sections other modules
    own."""

    path: Path | None = None
    models: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    default_model: str | None = None
    prices: Mapping[str, Price] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.path is not None and self.path.is_file()


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to read: ``explicit``, else ``$CHATPLUG_CONFIG``, else
    ``chatplug.toml`` in :func:`chatplug.paths.config_dir`."""
    if explicit is not None and str(explicit).strip():
        return Path(explicit).expanduser().absolute()
    named = os.environ.get(CONFIG_VARIABLE, "").strip()
    if named:
        return Path(named).expanduser().absolute()
    return config_dir() / CONFIG_FILE


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # type: ignore[import-not-found,unused-ignore]  # declared for 3.10 only

    return tomli


def _where(path: Path | None, key: str) -> str:
    return f"{key} in {path}" if path is not None else key


def parse_models(value: Any, *, where: str = "models") -> dict[str, str | tuple[str, ...]]:
    """Aliases from a table (the file's ``[models]``, or ``CHATPLUG_MODELS`` parsed as
    JSON): each name maps to a ``Provider/model`` string or a list of them (a route).

    :raises ConfigurationError: not a table, or an entry that is neither a non-empty
        string nor a non-empty list of them (the message names the entry).
    """
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a table of name = \"Provider/model\" "
                                 f"(or a list of them, a route); got {type(value).__name__}.")
    models: dict[str, str | tuple[str, ...]] = {}
    for name, target in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"{where}: an alias name must be a non-empty string.")
        if isinstance(target, str) and target.strip():
            models[name] = target.strip()
        elif (isinstance(target, list) and target
              and all(isinstance(t, str) and t.strip() for t in target)):
            models[name] = tuple(t.strip() for t in target)
        else:
            raise ConfigurationError(
                f"{where}: alias {name!r} must be \"Provider/model\" or a non-empty list of "
                f"them (a route); got {target!r}.")
    return models


def parse_prices(value: Any, *, where: str = "prices") -> dict[str, Price]:
    """Prices from the file's ``[prices]``: one table per model (``"Provider/model"``,
    ``"Provider/*"`` or an alias), USD per million tokens.

    :raises ConfigurationError: not a table, a model without ``input`` and ``output``,
        an unknown price kind, or a value that is not a number ≥ 0.
    """
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a table of models, each a table of "
                                 "USD per million tokens (input, output, cached).")
    prices: dict[str, Price] = {}
    for model, table in value.items():
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{where}: [prices.{model!r}] must be a table "
                                     "(input = 0.15, output = 0.60).")
        unknown = sorted(set(table) - set(_PRICE_KINDS))
        if unknown:
            raise ConfigurationError(f"{where}: [prices.{model!r}] has unknown "
                                     f"{', '.join(unknown)}; the kinds are "
                                     f"{', '.join(_PRICE_KINDS)}.")
        amounts: dict[str, float] = {}
        for kind, amount in table.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                raise ConfigurationError(f"{where}: [prices.{model!r}] {kind} must be a "
                                         f"number ≥ 0 (USD per million tokens); "
                                         f"got {amount!r}.")
            amounts[kind] = float(amount)
        if "input" not in amounts or "output" not in amounts:
            raise ConfigurationError(f"{where}: [prices.{model!r}] needs both input and "
                                     "output (USD per million tokens).")
        prices[model] = Price(**amounts)
    return prices


def load_config(path: str | os.PathLike[str] | None = None) -> ConfigFile:
    """Read and check the config file (see the module's docstring for where it is).

    :raises ConfigurationError: the file exists but cannot be read, is not valid TOML
        (the message gives the parser's line and column), or a known section is malformed.
    """
    where = config_path(path)
    try:
        raw = where.read_bytes()
    except FileNotFoundError:
        if path is not None or os.environ.get(CONFIG_VARIABLE, "").strip():
            raise ConfigurationError(
                f"the config file {where} does not exist; create it or fix --config / "
                f"{CONFIG_VARIABLE}.") from None
        return ConfigFile(path=where)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the config file {where}: "
                                 f"{exc.strerror or exc}.") from None
    toml = _toml()
    try:
        data = toml.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"the config file {where} is not UTF-8 text.") from None
    except toml.TOMLDecodeError as exc:
        raise ConfigurationError(f"the config file {where} is not valid TOML: {exc}.") from None
    default = data.get("default_model")
    if default is not None and (not isinstance(default, str) or not default.strip()):
        raise ConfigurationError(f"{_where(where, 'default_model')} must be a model name "
                                 f"(a string); got {default!r}.")
    return ConfigFile(
        path=where,
        models=parse_models(data.get("models", {}), where=_where(where, "[models]")),
        default_model=default.strip() if isinstance(default, str) else None,
        prices=parse_prices(data.get("prices", {}), where=_where(where, "[prices]")),
        data=data,
    )


def use_config(path: str | os.PathLike[str]) -> ConfigFile:
    """``--config PATH``: read and check the file, then name it in ``$CHATPLUG_CONFIG``
    so that this process and every worker process it starts read the same file.

    :raises ConfigurationError: as :func:`load_config` (a missing file included).
    """
    config = load_config(path)
    os.environ[CONFIG_VARIABLE] = str(config.path)
    return config


#: A top-level ``default_model = ...`` line (with what follows it on the line).
_DEFAULT_LINE = re.compile(r"^\s*default_model\s*=.*$")
_TABLE_LINE = re.compile(r"^\s*\[")


def store_default_model(name: str | None, path: str | os.PathLike[str] | None = None) -> Path:
    """Set (``None``: remove) ``default_model`` in the config file, under its lock
    (:func:`chatplug.filelock.locked`), by rewriting that one line: the rest of the file,
    comments included, stays as it was.  The file is created if missing, and replaced
    by a rename (a reader never sees half of it).  Returns its path.

    :raises ConfigurationError: the file (before or after) is not a valid config file,
        or ``name`` is empty.
    :raises StorageError: the lock is held elsewhere, or the file cannot be written.
    """
    from .errors import StorageError

    if name is not None and not name.strip():
        raise ConfigurationError("the default model must be a non-empty model name.")
    where = config_path(path)
    private_dir(where.parent)
    with locked(where):
        if where.exists():
            load_config(where)  # never rewrite a file it cannot read
        text = where.read_text(encoding="utf-8") if where.exists() else ""
        lines = text.splitlines(keepends=True)
        first_table = next((i for i, line in enumerate(lines) if _TABLE_LINE.match(line)),
                           len(lines))
        found = next((i for i in range(first_table) if _DEFAULT_LINE.match(lines[i])), None)
        # A JSON string is a TOML basic string (the same escapes).
        new = [] if name is None else [f"default_model = {json.dumps(name.strip())}\n"]
        if found is not None:
            lines[found:found + 1] = new
        else:
            lines[first_table:first_table] = new + (["\n"] if first_table < len(lines) else [])
        updated = "".join(lines)
        try:
            _toml().loads(updated)
        except _toml().TOMLDecodeError as exc:  # a multi-line value it could not see
            raise ConfigurationError(f"could not set default_model in {where} without "
                                     f"breaking it ({exc}); edit it by hand.") from None
        temporary = where.with_name(f".{where.name}.tmp")
        try:
            temporary.write_text(updated, encoding="utf-8")
            os.replace(temporary, where)
        except OSError as exc:
            raise StorageError(f"cannot write the config file {where}: "
                               f"{exc.strerror or exc}.") from None
    return where
