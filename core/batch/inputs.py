"""Reading a batch input: OpenAI Batch JSONL, streamed line by line.

Each line is ``{"custom_id", "method", "url", "body"}``; ``url`` is
``/v1/chat/completions`` or absent, ``method`` ``POST`` or absent, and
``body`` a chat-completions request whose ``model`` names a provider, a
route, or ``Provider/model`` (or is absent when a default is given).  The
library's own validation (``Provider.prepare``) checks the rest before
anything is sent.

The file is never held in memory: :func:`scan` reads it line by line and
keeps only the set of ``custom_id`` values seen (to report duplicates).
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuthenticationError, ChatplugError, InvalidRequestError, ProviderNotFoundError
from ..hooks import CALL_OPTIONS
from .errors import BatchFileError, BatchProblem

__all__ = ["CHAT_COMPLETIONS", "LINE_ERRORS", "Request", "Resolver", "Skipped", "check",
           "parse_request", "scan"]

#: The only endpoint a batch line may name.
CHAT_COMPLETIONS = "/v1/chat/completions"
#: Failures that make one line invalid (anything else, such as a bad setting, stops the batch).
LINE_ERRORS = (InvalidRequestError, AuthenticationError)
#: Distinct model names whose resolution is remembered.
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a batch, parsed and resolved (``prepare`` not yet run).

    :ivar target: a :class:`chatplug.Provider` or a route: anything with the
        provider caller API (``complete``, and ``prepare`` where it has one).
    :ivar model: the model to ask for, ``None`` for the target's default.
    :ivar params: the body's other fields: the provider's parameters.
    """

    line: int | None
    custom_id: str
    target: Any
    model: str | None
    messages: Any
    params: dict[str, Any]

    @property
    def target_name(self) -> str:
        return str(getattr(self.target, "name", self.target))


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line whose ``custom_id`` already has a result in the output."""

    line: int
    custom_id: str


class Resolver:
    """What a body's ``model`` names: ``(target, model)``, with the defaults of ``-p``/``-m``.

    - ``"Provider/model"``, ``"Provider"`` or a route name: resolved by the registry;
    - absent: ``provider`` (itself any of those) with ``model`` as its model; without
      ``provider``, ``model`` as the registry resolves it, else the default model;
    - a bare model name such as ``gpt-4o-mini`` (as OpenAI's own batch files
      have) that names no provider: a model of ``provider``, when one is given.

    Results are remembered per name, so a file of 100,000 lines naming three
    models resolves three times.
    """

    def __init__(self, registry: Any, provider: str | None = None,
                 model: str | None = None) -> None:
        self.registry = registry
        self.provider = provider
        self.model = model
        self._cache: dict[str | None, tuple[Any, str | None] | str] = {}

    def resolve(self, name: str | None) -> tuple[Any, str | None]:
        """``(target, model)`` for a body's ``model`` field (``None``: absent).

        :raises ProviderNotFoundError: nothing of that name, and no default to fall back on.
        :raises InvalidRequestError: no model field and no default.
        """
        cached = self._cache.get(name)
        if cached is None:
            try:
                cached = self._resolve(name)
            except ProviderNotFoundError as exc:
                cached = str(exc)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[name] = cached
        if isinstance(cached, str):
            raise ProviderNotFoundError(cached)  # a new error each time: tracebacks stay short
        return cached

    def _resolve(self, name: str | None) -> tuple[Any, str | None]:
        if name is None:
            if self.provider is not None:
                target, model = self.registry.resolve(self.provider)
                return target, self.model or model
            if self.model is not None:
                target, model = self.registry.resolve(self.model)
                return target, model
            if getattr(self.registry, "default_model", None) is not None:
                target, model = self.registry.resolve(None)
                return target, model
            raise InvalidRequestError(
                "body.model is missing: name a provider, a route or Provider/model in it, "
                "or give a default with -p/--provider (run_batch(provider=...)) or a default "
                "model (CHATPLUG_DEFAULT_MODEL, or default_model in chatplug.toml)."
            )
        try:
            target, model = self.registry.resolve(name)
        except ProviderNotFoundError:
            if self.provider is None:
                raise
            target, _ = self.registry.resolve(self.provider)
            return target, name
        return target, model


def parse_request(obj: Any, resolver: Resolver, *, line: int | None = None,
                  custom_id: str | None = None) -> Request:
    """One batch line (already decoded from JSON) as a :class:`Request`.

    Fields that are ``null`` in the body are left out, as the OpenAI API treats
    them (and as Ray Data fills the fields a row lacks).

    :raises InvalidRequestError: not an object, no ``custom_id``, another
        ``method`` or ``url``, no ``body``, a chatplug call option in the body,
        or a ``model`` that names nothing.
    """
    if custom_id is None:
        custom_id = custom_id_of(obj)
    method = obj.get("method")
    if method is not None and (not isinstance(method, str) or method.upper() != "POST"):
        raise InvalidRequestError(f"method {method!r} is not supported; a batch line is a "
                                  f"POST to {CHAT_COMPLETIONS}.")
    url = obj.get("url")
    if url is not None and url != CHAT_COMPLETIONS:
        raise InvalidRequestError(f"url {url!r} is not supported: chatplug runs "
                                  f"{CHAT_COMPLETIONS} requests only.")
    body = obj.get("body")
    if not isinstance(body, dict):
        raise InvalidRequestError("body is missing or not a JSON object: it is the "
                                  "chat-completions request, e.g. {\"model\": ..., "
                                  "\"messages\": [...]}.")
    fields = {key: value for key, value in body.items() if value is not None}
    name = fields.pop("model", None)
    if name is not None and not isinstance(name, str):
        raise InvalidRequestError(f"body.model must be a string, not {name!r}.")
    messages = fields.pop("messages", None)
    # A batch always collects the whole reply; how the wire is read is chatplug's business.
    fields.pop("stream", None)
    options = sorted(CALL_OPTIONS.intersection(fields))
    if options:
        # A batch file must not redirect requests (url) or swap keys (api_key): it may
        # come from a data set rather than from whoever configured the providers.
        raise InvalidRequestError(
            f"body.{options[0]} is a chatplug call option, not a chat-completions field; "
            "set it in the environment (see docs/configuration.md), not in the batch file."
        )
    target, model = resolver.resolve(name)
    return Request(line, custom_id, target, model, messages, fields)


def custom_id_of(obj: Any) -> str:
    """The line's ``custom_id``.

    :raises InvalidRequestError: the line is not an object, or has no non-empty string id.
    """
    if not isinstance(obj, dict):
        raise InvalidRequestError(f"the line is JSON but not an object "
                                  f"({type(obj).__name__}); each line is {{\"custom_id\": ..., "
                                  "\"method\": ..., \"url\": ..., \"body\": ...}.")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        what = "missing" if custom_id is None else f"{custom_id!r}, not a non-empty string"
        raise InvalidRequestError(f"custom_id is {what}: every line needs a unique string "
                                  "custom_id, which its result carries.")
    return custom_id


def check(request: Request) -> None:
    """Validate ``request`` as the library would before sending it; nothing is sent.

    :raises InvalidRequestError: bad messages or parameters, an unsupported model.
    :raises AuthenticationError: the provider needs a key and none is configured.
    """
    prepare = getattr(request.target, "prepare", None)
    if prepare is not None:
        prepare(request.messages, request.model, **request.params)
    else:
        from ..calls.messages import validate_messages

        validate_messages(request.messages)


def _decode(raw: bytes) -> Any:
    try:
        # Decoded here, not by json.loads: it would guess the encoding of every line.
        return json.loads(raw.decode("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf")
                                     else "utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"the line is not UTF-8 text (byte {exc.start + 1}).") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"the line is not valid JSON: {exc.msg} at column {exc.colno}.") from None
    except (ValueError, RecursionError):
        raise InvalidRequestError("the line is not valid JSON (or nested too deeply).") from None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(1-based number, bytes)`` of each non-blank line."""
    try:
        source = path.open("rb")
    except OSError as exc:
        raise BatchFileError(f"cannot read the batch input {path}: {exc.strerror or exc}. "
                             "Check the path.") from None
    with source:
        number = 0
        try:
            for raw in source:
                number += 1
                if raw.strip():
                    yield number, raw
        except OSError as exc:
            raise BatchFileError(f"reading {path} failed at line {number + 1}: "
                                 f"{exc.strerror or exc}.") from None


def _problem(line: int, custom_id: str | None, error: ChatplugError) -> BatchProblem:
    return BatchProblem(line, custom_id, error.code, str(error))


def scan(path: Path, resolver: Resolver, answered: Container[str],
         seen: dict[str, int]) -> Iterator[Request | Skipped | BatchProblem]:
    """Each line of the input as a :class:`Request`, a :class:`Skipped` line (its
    ``custom_id`` is in ``answered``) or a :class:`BatchProblem`.

    ``seen`` collects ``{custom_id: line}``; a ``custom_id`` already in it is a
    problem of the later line.  Requests are not :func:`check`-ed here.

    :raises BatchFileError: the file cannot be read.
    """
    for number, raw in _lines(path):
        try:
            obj = _decode(raw)
            custom_id = custom_id_of(obj)
        except InvalidRequestError as exc:
            yield _problem(number, None, exc)
            continue
        first = seen.get(custom_id)
        if first is not None:
            yield BatchProblem(number, None, InvalidRequestError.code,
                               f"custom_id {custom_id!r} is already used on line {first}; "
                               "each line needs its own.")
            continue
        seen[custom_id] = number
        if custom_id in answered:
            yield Skipped(number, custom_id)
            continue
        try:
            yield parse_request(obj, resolver, line=number, custom_id=custom_id)
        except LINE_ERRORS as exc:
            yield _problem(number, custom_id, exc)
