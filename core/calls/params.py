"""A provider's parameters: read from its completion function, validated with pydantic.

The ``params`` string keeps the seed's form, built from ``typing.get_type_hints``::

    chatplug.providers.gravityengine supports: (model: str, messages: list, stream: bool, ...)

Unannotated parameters are listed by name alone (the seed raised KeyError on
them), and a hint that cannot be resolved is shown as written and not checked
(also one that is only partly resolvable, ``dict[str, "Options"]``, or that
pydantic cannot build a validator for): such a value is accepted as it is, and
a warning says so once.  pydantic is imported only when a call passes provider
parameters.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import threading
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError
from ..hooks import CALL_OPTIONS, CORE_ARGUMENTS, INJECTED_ARGUMENTS

__all__ = ["REQUIRED", "Parameter", "ParameterSet", "Range", "type_name"]

logger = logging.getLogger("chatplug.params")

class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The ``default`` of a parameter that has none.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric parameter, checked before anything is sent::

        temperature: Annotated[float, Range(0, 2)] = 0.7

    Plain data, so a provider module that uses it imports no pydantic.
    """

    ge: float | None = None
    le: float | None = None


@dataclass(frozen=True)
class Parameter:
    """One parameter of a provider: its name, type (as shown) and default."""

    name: str
    type: str
    default: Any = REQUIRED
    annotation: Any = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"name", "type", "default", "required"}``."""
        default = self.default
        if default is REQUIRED or not isinstance(default, (str, int, float, bool, type(None))):
            default = None if default is REQUIRED else repr(default)
        return {"name": self.name, "type": self.type, "default": default,
                "required": self.required}

    def __str__(self) -> str:
        return f"{self.name}: {self.type}" if self.type else self.name


def type_name(hint: Any) -> str:
    """A short readable name for a type hint (``float``, ``list``, ``float | None``)."""
    if hint is None or hint is inspect.Parameter.empty:
        return ""
    if isinstance(hint, str):
        return hint
    if typing.get_origin(hint) is typing.Annotated:
        return type_name(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if isinstance(hint, type):
        return hint.__name__
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if args and isinstance(origin, type):  # dict[str, Annotated[int, Range(...)]] -> dict[str, int]
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in args)}]"
    text = repr(hint).replace("typing.", "")
    return text.replace("NoneType", "None")


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    """Resolved type hints; one that cannot be resolved is kept as written.

    ``get_type_hints`` fails as a whole when any single annotation names
    something imported only for type checkers (``http: HTTPClient``), so on
    failure each annotation is resolved on its own.
    """
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(function, "__globals__", {})
    for name, annotation in (getattr(function, "__annotations__", None) or {}).items():
        if isinstance(annotation, str):
            with contextlib.suppress(Exception):
                annotation = eval(annotation, dict(namespace))
        hints[name] = annotation
    return hints


class ParameterSet:
    """The parameters of one completion function, and their validation.

    :param function: the provider's completion function.
    :param models: the provider's model list (its first entry is the default model).
    """

    def __init__(self, function: Callable[..., Any], models: list[str]) -> None:
        signature = inspect.signature(function)
        hints = _hints(function)
        parameters: list[Parameter] = []
        self.injected: frozenset[str] = frozenset()
        injected = set()
        for name, spec in signature.parameters.items():
            if spec.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            if name in INJECTED_ARGUMENTS:
                injected.add(name)
                continue
            hint = hints.get(name, spec.annotation)
            default = spec.default if spec.default is not inspect.Parameter.empty else REQUIRED
            if name == "model" and models and default is REQUIRED:
                default = models[0]
            if name == "stream" and default is REQUIRED:
                default = False
            annotation = None if hint is inspect.Parameter.empty else hint
            parameters.append(Parameter(name, type_name(annotation), default, annotation))
        self.injected = frozenset(injected)
        reserved = sorted(CALL_OPTIONS & {p.name for p in parameters})
        if reserved:
            raise ValueError(
                f"parameter name(s) {', '.join(reserved)} are reserved for chatplug's call "
                "options; rename them in the completion function."
            )
        self.all: tuple[Parameter, ...] = tuple(parameters)
        self.user: dict[str, Parameter] = {
            p.name: p for p in parameters if p.name not in CORE_ARGUMENTS
        }
        self._defaults = {p.name: p.default for p in self.user.values() if not p.required}
        self._model: Any = None
        self._lock = threading.Lock()

    def values(self, checked: Mapping[str, Any]) -> Mapping[str, Any]:
        """Every user parameter by name: the ``checked`` (validated) value, else the
        declared default; read-only (what a function naming ``params`` receives)."""
        return types.MappingProxyType({**self._defaults, **checked})

    def params_string(self, module_name: str) -> str:
        """The seed's ``params`` string: ``<module> supports: (name: type, ...)``."""
        return f"{module_name} supports: ({', '.join(str(p) for p in self.all)})"

    def validate(
        self, values: Mapping[str, Any], *, from_strings: bool = False
    ) -> dict[str, Any]:
        """Check provider parameters against the declared names and types.

        ``from_strings`` converts text (from the command line) to the declared
        types; otherwise types are checked strictly (``"0.2"`` is not a float,
        ``True`` is not a number) except that an int is a valid float.

        :raises InvalidRequestError: an unknown name, or a value of the wrong type,
            with the parameter named.
        """
        unknown = [name for name in values if name not in self.user]
        if unknown:
            name = unknown[0]
            if name in INJECTED_ARGUMENTS or name in CALL_OPTIONS:
                raise InvalidRequestError(
                    f"{name!r} is not a provider parameter: it is a call option of "
                    "create()/complete() (timeout, max_retries, api_key, url, headers, "
                    "extra_body), or supplied by chatplug from the provider's settings.",
                    param=name,
                )
            known = ", ".join(self.user) or "none"
            close = difflib.get_close_matches(name, list(self.user), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidRequestError(
                f"unknown parameter {name!r}.{hint} This provider accepts: {known}.",
                param=name,
            )
        if not values:
            return {}
        from pydantic import ValidationError

        model = self._pydantic_model()
        try:
            if from_strings:
                checked = model.model_validate_strings(dict(values))
            else:
                checked = model.model_validate(dict(values), strict=True)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "parameters"
            expected = self.user[str(error["loc"][0])].type if error["loc"] else ""
            raise InvalidRequestError(
                f"parameter {field}={error.get('input')!r} is invalid: {error['msg']}"
                + (f" (expected {expected})." if expected else "."),
                param=field if error["loc"] else None,
            ) from None
        return {name: getattr(checked, name) for name in values}

    def _pydantic_model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    fields: dict[str, Any] = {
                        p.name: (
                            Any if p.annotation is None or isinstance(p.annotation, str)
                            else _for_pydantic(p.annotation),
                            None if p.required else p.default,
                        )
                        for p in self.user.values()
                    }
                    model = _build(fields)
                    if model is None:
                        # Some hint pydantic cannot use (an unresolvable forward reference
                        # inside it, say): that parameter is not checked; the rest are.
                        for name, (hint, default) in fields.items():
                            if hint is not Any and _build({name: (hint, default)}) is None:
                                logger.warning(
                                    "parameter %s: the type hint %s cannot be resolved, so "
                                    "its values are not checked; fix the hint in the "
                                    "provider's completion function", name,
                                    self.user[name].type)
                                fields[name] = (Any, default)
                        model = _build(fields)
                    self._model = model
        return self._model


def _build(fields: dict[str, Any]) -> Any:
    """The pydantic model of ``fields``, or ``None`` if one cannot be fully built."""
    from pydantic import ConfigDict, create_model

    try:
        model = create_model(
            "ProviderParameters",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                                  allow_inf_nan=False),
            **fields,
        )
    except Exception:
        return None
    return model if getattr(model, "__pydantic_complete__", True) else None


def _for_pydantic(hint: Any) -> Any:
    """``hint`` with every :class:`Range` turned into pydantic's ``Field(ge=, le=)``."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        from pydantic import Field

        converted = [Field(ge=e.ge, le=e.le) if isinstance(e, Range) else e for e in extras]
        arguments = (_for_pydantic(base), *converted)
        return typing.Annotated[arguments]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_for_pydantic(arg) for arg in typing.get_args(hint))]  # noqa: UP007
    if origin in (list, dict, tuple, set, frozenset) and typing.get_args(hint):
        # A Range inside a container (dict[str, Annotated[int, Range(-100, 100)]]) is checked too.
        return origin[tuple(_for_pydantic(arg) for arg in typing.get_args(hint))]
    return hint

