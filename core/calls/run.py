"""One completion call: its attempts, its deadline, and what observers hear of it.

The provider's generator is driven here.  Whatever escapes it becomes a
:class:`ChatplugError` carrying provider and model; a failure before the
first piece reached the caller is retried under the :class:`RetryPolicy`,
one after a piece never is (that would duplicate text).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ChatplugError, ProviderResponseError
from ..transport.redaction import redact
from .retry import RetryPolicy

__all__ = ["Completion"]

logger = logging.getLogger("chatplug.provider")

_TRANSPORT_MODULES = ("requests", "urllib3", "socket", "http", "ssl")


class Completion:
    """Runs one call of ``function(**arguments)`` and yields its text pieces.

    :param translate: maps a transport exception to chatplug's error for it.
    :param hook: pluggy's hook relay when observers are registered, else ``None``.
    :param origin: who to blame for a plugin bug ("the plugin chatplug-foo 1.0").
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        stream: bool,
        function: Callable[..., Any],
        arguments: dict[str, Any],
        translate: Callable[[BaseException], ChatplugError],
        api_key: str | None,
        policy: RetryPolicy,
        deadline: float,
        hook: Any,
        origin: str,
    ) -> None:
        self.provider = provider
        self.model = model
        self.stream = stream
        self.request_id = os.urandom(6).hex()
        self._function = function
        self._arguments = arguments
        self._translate = translate
        self._api_key = api_key
        self._policy = policy
        self._deadline = deadline
        self._hook = hook
        self._origin = origin

    def pieces(self) -> Iterator[str]:
        """The reply's pieces, retrying failures that happen before the first one."""
        started = time.perf_counter()
        self._notify("chatplug_on_request", stream=self.stream)
        failures: list[str] = []
        delivered = characters = 0
        first_piece: float | None = None
        outcome = "closed"
        try:
            while True:
                attempt: Any = None
                try:
                    # One loop level between the provider and the caller: it runs per piece.
                    attempt = self._function(**self._arguments)
                    if isinstance(attempt, str):
                        attempt = (attempt,)
                    for piece in attempt:
                        if type(piece) is not str:
                            raise ProviderResponseError(
                                f"the provider yielded {type(piece).__name__}, not text; "
                                f"this is a bug in {self._origin}."
                            )
                        if first_piece is None:
                            first_piece = time.perf_counter() - started
                        delivered += 1
                        characters += len(piece)
                        yield piece
                    outcome = "complete"
                    return
                except Exception as exc:
                    error = self._as_chatplug_error(exc)
                    failures.append(error.reason)
                    wait = None
                    if not delivered:
                        wait = self._policy.delay(
                            error, len(failures), self._deadline - time.monotonic()
                        )
                    if wait is None:
                        if len(failures) > 1:
                            error.gave_up(failures)
                        outcome = "error"
                        self._notify("chatplug_on_error", duration_s=time.perf_counter() - started,
                                     attempts=len(failures), error=error)
                        if error is exc:
                            raise
                        raise error from None
                    logger.info("%s: attempt %d failed (%s); retrying in %.2f s",
                                self.provider, len(failures), error.reason, wait)
                    time.sleep(wait)
                finally:
                    close = getattr(attempt, "close", None)
                    if close is not None:
                        close()
        finally:
            if outcome != "error":
                self._notify(
                    "chatplug_on_response",
                    duration_s=time.perf_counter() - started,
                    first_piece_s=first_piece,
                    pieces=delivered,
                    characters=characters,
                    attempts=len(failures) + 1,
                    outcome=outcome,
                )

    def _as_chatplug_error(self, exc: Exception) -> ChatplugError:
        """Whatever escaped the provider, as chatplug's error carrying provider and model."""
        if isinstance(exc, ChatplugError):
            error = exc
        elif type(exc).__module__.split(".", 1)[0] in _TRANSPORT_MODULES or isinstance(
            exc, OSError
        ):
            error = self._translate(exc)
        else:
            error = ProviderResponseError(
                f"the provider failed with {type(exc).__name__}: "
                f"{redact(str(exc), self._api_key)}. This is a bug in {self._origin}; "
                "please report it."
            )
        error.provider = error.provider or self.provider
        error.model = error.model or self.model
        # Whatever a server or plugin put in the text, the key never leaves in an error.
        error.message = redact(error.message, self._api_key)
        return error

    def _notify(self, name: str, **details: Any) -> None:
        if self._hook is None:
            return
        try:
            getattr(self._hook, name)(
                provider=self.provider, model=self.model, request_id=self.request_id, **details
            )
        except Exception as exc:
            # An observer is never allowed to break a completion.
            logger.warning("observer hook %s failed: %s: %s", name, type(exc).__name__, exc)
