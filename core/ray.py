"""Batch completions on a Ray cluster: :class:`ChatCompletions` for ``Dataset.map_batches``.

::

    import ray
    from chatplug.ray import ChatCompletions

    requests = ray.data.read_json("requests.jsonl")        # OpenAI Batch lines
    results = requests.map_batches(
        ChatCompletions,
        fn_constructor_kwargs={"concurrency": 16, "qps": 5},   # per actor
        compute=ray.data.ActorPoolStrategy(size=4),           # Ray < 2.51: concurrency=4
        batch_size=64,
    )
    results.write_json("results/")

Rows are the batch file's lines (``custom_id``, ``body``, optionally
``method`` and ``url``); a ``body`` may also be a JSON string.  Each output
row has the columns of :data:`COLUMNS`: ``custom_id``, ``response`` (the
``chat.completion`` body, or null), ``error`` (``{"code", "message"}``, or
null), ``provider`` and ``usage``.  A failed request is a row with an error,
never a failed job.  See docs/scaling.md for sizing actors and for what Ray's
restarts mean for requests in flight.

This module never imports Ray: Ray imports it, in each actor (and its name
does not shadow Ray's, imports being absolute).  Install it from the chatplug
checkout: ``pip install ".[ray]"``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .batch.execute import Outcome, error_object, execute
from .batch.inputs import LINE_ERRORS, Resolver, parse_request
from .batch.limits import RateLimiter, check_concurrency, check_qps
from .errors import InvalidRequestError

if TYPE_CHECKING:
    from .batch.inputs import Request
    from .plugins.registry import Registry

__all__ = ["COLUMNS", "ChatCompletions"]

#: The columns of every output row.
COLUMNS = ("custom_id", "response", "error", "provider", "usage")
#: An event nobody sets: the rate limiter's stop signal inside an actor.
_NEVER = threading.Event()


def _plain(value: Any) -> Any:
    """Ray's numpy values (arrays of dicts of arrays...) as plain Python data."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if not isinstance(value, (str, bytes)):
        tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
        if tolist is not None:
            return _plain(tolist())
    return value


def _rows(batch: Any) -> list[dict[str, Any]]:
    """A batch in any of Ray's formats (numpy dict, pandas, pyarrow) as a list of rows."""
    if hasattr(batch, "to_pydict"):  # pyarrow
        batch = batch.to_pydict()
    elif hasattr(batch, "to_dict") and not isinstance(batch, Mapping):  # pandas
        batch = batch.astype(object).where(batch.notna(), None).to_dict("list")  # NaN: None
    columns = {name: list(values) for name, values in batch.items()}
    count = len(next(iter(columns.values()), []))
    return [{name: _plain(values[index]) for name, values in columns.items()}
            for index in range(count)]


class ChatCompletions:
    """A callable class for ``Dataset.map_batches``: each Ray actor builds one.

    :param provider: provider, route or ``Provider/model`` for rows without
        ``body.model`` (and whose bare model names are its models).
    :param model: the model for rows without ``body.model``.
    :param concurrency: requests in flight at once inside this actor.
    :param qps: at most this many requests start per second in this actor (the
        cluster's rate is ``qps`` times the number of actors).
    :param registry: the registry to use; by default each actor builds its own
        from the environment it runs in (``CHATPLUG_*`` variables), once.
    :raises InvalidRequestError: ``concurrency`` or ``qps`` out of range.
    """

    def __init__(self, *, provider: str | None = None, model: str | None = None,
                 concurrency: int = 8, qps: float | None = None,
                 registry: Registry | None = None) -> None:
        from .calls.workers import WorkerPool

        check_concurrency(concurrency)
        rate = check_qps(qps)
        if registry is None:
            from .plugins.registry import Registry

            registry = Registry()
        self._registry = registry
        self._resolver = Resolver(registry, provider, model)
        self._limiter = RateLimiter(rate) if rate else None
        self._pool = WorkerPool(concurrency, name="chatplug-ray")

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        """Answer every row of ``batch``; one output row per input row, in order."""
        from .wire.openai import completion_body

        pending: list[Any] = []
        for row in _rows(batch):
            custom_id = row.get("custom_id")
            try:
                request = self._parse(row)
            except LINE_ERRORS as exc:
                identity = custom_id if isinstance(custom_id, str) else None
                pending.append(Outcome(identity or "", "", error=error_object(exc)))
                continue
            pending.append(self._pool.submit(self._run, request))
        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for item in pending:
            outcome: Outcome = item if isinstance(item, Outcome) else item.result()
            completion = outcome.completion
            columns["custom_id"].append(outcome.custom_id or None)
            columns["provider"].append(outcome.provider)
            columns["error"].append(outcome.error)
            if completion is None:
                columns["response"].append(None)
                columns["usage"].append(None)
            else:
                body = completion_body(completion)
                columns["response"].append(body)
                columns["usage"].append(body["usage"])
        return columns

    def _parse(self, row: dict[str, Any]) -> Request:
        body = row.get("body")
        if isinstance(body, (str, bytes)):
            import json

            try:
                row = {**row, "body": json.loads(body)}
            except ValueError:
                raise InvalidRequestError("body is a string but not JSON; it is the "
                                          "chat-completions request.") from None
        return parse_request(row, self._resolver)

    def _run(self, request: Request) -> Outcome:
        if self._limiter is not None:
            self._limiter.wait(_NEVER)
        return execute(request)

    def close(self) -> None:
        """Close this actor's pooled connections (Ray ends actors without asking)."""
        self._registry.close()

