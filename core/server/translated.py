"""What the endpoints of the wires chatplug translates share (Messages, Responses).

A request that came in on another wire is a :class:`~chatplug.wire.translated.
TranslatedRequest`: OpenAI-shaped messages and fields mapped to the parameters that
could carry them.  :class:`TranslatedEndpoint` keeps, for the provider the request
names, the parameters it declares (a route: the first choice of each), runs the
call on the shared path, and names every field it dropped in ``x-chatplug-dropped``.
"""

from __future__ import annotations

import abc
import json
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from .endpoint import Endpoint
from .errors import GatewayError
from .request import ChatRequest

if TYPE_CHECKING:
    from ..wire.translated import TranslatedRequest

__all__ = ["DROPPED_HEADER", "TranslatedEndpoint", "load_json"]

#: Names the fields of a request that the target could not take.
DROPPED_HEADER = b"x-chatplug-dropped"


def load_json(body: bytes, what: str) -> Any:
    """The JSON body of a request.

    :raises GatewayError: 400: not JSON.
    """
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise GatewayError(400, f"the request body is not valid JSON; send {what} "
                                "(Content-Type: application/json).", code="invalid_request",
                           retry=False) from None


def invalid(error: InvalidRequestError) -> GatewayError:
    return GatewayError(400, error.message, code="invalid_request", retry=False)


class TranslatedEndpoint(Endpoint):
    """An endpoint whose requests are translated (see the module's docstring)."""

    #: ``parse`` is written once here; each wire gives its parser and what it reads.
    what = "a request object"

    @abc.abstractmethod
    def translate(self, payload: Any) -> TranslatedRequest:
        """The wire's request as chatplug's call.

        :raises InvalidRequestError: naming what is wrong.
        """

    def parse(self, body: bytes) -> TranslatedRequest:
        try:
            request = self.translate(load_json(body, self.what))
        except InvalidRequestError as error:
            raise invalid(error) from None
        return request  # no model: the default model (the registry says if there is none)

    def request_for(self, parsed: Any, target: Any) -> ChatRequest:
        parameters = getattr(target, "parameters", None)
        declared = None if parameters is None else {p.name for p in parameters}
        params, parsed.dropped_for_target = parsed.params_for(declared)
        return ChatRequest(model=parsed.model, messages=parsed.messages,
                           stream=parsed.stream, include_usage=True, params=params,
                           extra_body=None)

    def headers(self, parsed: Any, request: ChatRequest) -> list[tuple[bytes, bytes]]:
        dropped = parsed.dropped_for_target
        if not dropped:
            return []
        # Unique, in order; header values are ASCII (field names always are).
        names = ", ".join(dict.fromkeys(dropped))
        return [(DROPPED_HEADER, names.encode("ascii", "replace"))]
