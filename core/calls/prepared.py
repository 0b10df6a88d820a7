"""A validated call, not yet run: :class:`PreparedCall`.

:meth:`chatplug.Provider.prepare` checks messages, model, parameters, the key
and the call options and returns this value; nothing has been sent and
nothing is open.  Running it (:class:`chatplug.calls.run.Call`) is a separate
step, so a route can prepare a call for each of its entries before trying
any, the async API can run it on a worker, and the gateway can refuse a bad
request before it commits to a status code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .options import CallOptions

if TYPE_CHECKING:
    from ..transport.client import HTTPClient

__all__ = ["PreparedCall"]


@dataclass(frozen=True)
class PreparedCall:
    """Everything one call of one provider needs, checked.

    :ivar stream: whether the caller streams; ``wire_stream`` whether the
        provider is asked to (a provider without stream support never is).
    :ivar params: the provider's own parameters, converted to their types.
    :ivar url: the effective base URL (call option, else setting, else module).
    :ivar api_key: the effective key (call option, else setting); never in a repr.
    """

    provider: str
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    params: dict[str, Any]
    options: CallOptions
    url: str
    api_key: str | None = field(repr=False)
    function: Callable[..., Any] = field(repr=False)
    injected: frozenset[str] = field(repr=False)
    origin: str = field(repr=False)
    supports_stream: bool = True
    #: The provider's IO goes only through chatplug.wire: an event loop may run it.
    native_async: bool = False
    #: Every user parameter (the caller's value, else the default), for a function that
    #: names ``params``; empty for one that does not.
    all_params: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def wire_stream(self) -> bool:
        return self.stream and self.supports_stream

    def arguments(self, http: HTTPClient) -> dict[str, Any]:
        """The keyword arguments of the provider's completion function."""
        arguments: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "stream": self.wire_stream,
            **self.params,
        }
        injected = self.injected
        if "url" in injected:
            arguments["url"] = self.url
        if "api_key" in injected:
            arguments["api_key"] = self.api_key
        if "http" in injected:
            arguments["http"] = http
        if "params" in injected:
            arguments["params"] = self.all_params
        return arguments
