"""OpenAI's chat-completions request parameters, declared once: :class:`ChatParameters`.

A provider that speaks the whole API takes them as ``**options:
Unpack[ChatParameters]``; :class:`chatplug.calls.params.ParameterSet` reads each field
as a provider parameter (optional, default ``None``: left out of the request), checks
values against the field's type, and the docs' table of the OpenAI provider's
parameters is generated from the same fields (``tests/test_docs_openai.py``).

The fields follow openai-python's ``completion_create_params.py`` (the API's own
reference says what each does).  Enumerations OpenAI extends over time
(``reasoning_effort``, ``service_tier``, ``verbosity``, ...) are typed ``str``, so a
value newer than this list still goes through; the objects (``audio``,
``prediction``, ``web_search_options``, ...) are checked to be objects and sent as
they are.  Plain typing data: importing it imports neither pydantic nor requests.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, TypedDict

from .params import Range

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - typing_extensions comes with pydantic
    from typing_extensions import Unpack

__all__ = ["ChatParameters", "Unpack"]

#: A JSON object sent as it is.
Object = dict[str, Any]


class ChatParameters(TypedDict, total=False):
    """Every optional request field of ``POST /chat/completions`` (``model``,
    ``messages`` and ``stream`` are chatplug's own arguments)."""

    audio: Object
    frequency_penalty: Annotated[float, Range(-2, 2)]
    function_call: str | Object
    functions: list[Object]
    logit_bias: dict[str, Annotated[int, Range(-100, 100)]]
    logprobs: bool
    max_completion_tokens: Annotated[int, Range(1)]
    max_tokens: Annotated[int, Range(1)]
    metadata: dict[str, str]
    modalities: list[str]
    moderation: Object
    n: Annotated[int, Range(1, 128)]
    parallel_tool_calls: bool
    prediction: Object
    presence_penalty: Annotated[float, Range(-2, 2)]
    prompt_cache_key: str
    prompt_cache_options: Object
    prompt_cache_retention: str
    reasoning_effort: str
    response_format: Object
    safety_identifier: str
    seed: int
    service_tier: str
    stop: str | list[str]
    store: bool
    stream_options: Object
    temperature: Annotated[float, Range(0, 2)]
    tool_choice: str | Object
    tools: list[Object]
    top_logprobs: Annotated[int, Range(0, 20)]
    top_p: Annotated[float, Range(0, 1)]
    user: str
    verbosity: str
    web_search_options: Object
