"""chatplug's exception hierarchy.

Every failure that reaches a caller of chatplug is a :class:`ChatplugError`.
Each message says what happened and what to do about it; ``provider`` and
``model`` are filled in wherever they are known.  No message ever contains an
API key: the transport redacts the configured key from anything a server
echoes back before it becomes part of an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .calls.completion import Completion

__all__ = [
    "ADVICE",
    "AuthenticationError",
    "ChatplugError",
    "ConfigurationError",
    "ContentFilteredError",
    "InvalidRequestError",
    "ModelNotSupportedError",
    "PluginLoadError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderNotFoundError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RouteFailedError",
    "StorageError",
    "StreamInterruptedError",
    "UntrustedDotenvError",
]


#: What to do, in the library's terms, by kind: the exact words messages end their advice
#: with, so that a front end finds the kind (:attr:`ChatplugError.hint`) and says it in its
#: own terms (the CLI: ``--timeout``, ``chatplug keys set PROVIDER``).
ADVICE = {
    "timeout": "Raise CHATPLUG_TIMEOUT or pass a larger timeout=.",
    "api_key": "or pass api_key=.",
    "api_key_sent": "(or the api_key= passed to the call).",
}


class ChatplugError(Exception):
    """Base class of every error chatplug raises.

    ``provider`` and ``model`` name the provider and model involved, when known.
    ``str(error)`` is prefixed with the provider's name so that a one-line
    report (the CLI prints exactly that) says where it happened.
    """

    #: Whether trying the same request again could succeed (see docs/reliability.md).
    retryable: bool = False
    #: A short stable name of the kind of failure, for machine-readable reports
    #: (batch output lines, the gateway's error envelope).
    code: str = "chatplug_error"
    #: Messages that start with an HTTP status line ("503 Service Unavailable: ...").
    _status_first = False

    def __init__(self, message: str, *, provider: str | None = None, model: str | None = None):
        super().__init__(message)
        self.provider = provider
        self.model = model
        #: One line per failed attempt when the call was retried, oldest first.
        self.attempts: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """The message without the provider prefix; ``args`` always agrees with it."""
        return str(self.args[0]) if self.args else ""

    @message.setter
    def message(self, text: str) -> None:
        self.args = (text,)

    @property
    def hint(self) -> str | None:
        """The kind of advice the message gives (a key of :data:`ADVICE`: ``"timeout"``,
        ``"api_key"``, ``"api_key_sent"``), or ``None``."""
        message = self.message
        return next((kind for kind, words in ADVICE.items() if words in message), None)

    @property
    def reason(self) -> str:
        """The failure in a few words (its first sentence), for per-attempt reports."""
        return self.message.split(". ", 1)[0].rstrip(".")

    def gave_up(self, reasons: list[str]) -> None:
        """Record that the call failed ``len(reasons)`` times; the message says so."""
        self.attempts = tuple(reasons)
        count = f" after {len(reasons)} attempts"
        reason = self.reason
        if self._status_first and ": " in reason:
            # "503 Service Unavailable: busy" -> "503 Service Unavailable after 3 attempts: busy"
            head, _, rest = reason.partition(": ")
            self.message = head + count + ": " + rest + self.message[len(reason):]
        else:
            self.message = reason + count + self.message[len(reason):]

    def __str__(self) -> str:
        text = self.message
        if self.provider and not text.startswith(f"{self.provider}:"):
            text = f"{self.provider}: {text}"
        if len(self.attempts) > 1:
            text += "".join(
                f"\n  attempt {number}: {reason}"
                for number, reason in enumerate(self.attempts, 1)
            )
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ConfigurationError(ChatplugError):
    """A setting (environment variable or ``.env`` entry) has an invalid value."""

    code = "configuration_error"


class UntrustedDotenvError(ConfigurationError):
    """The ``.env`` file of the working directory (a checkout anyone may have written)
    points a provider away from its default URL, and the key that would be sent there
    is the user's own (the environment, the keys file).  Nothing was sent; set
    ``CHATPLUG_TRUST_DOTENV=1`` in the environment to trust that ``.env``."""

    code = "untrusted_dotenv"


class PluginLoadError(ChatplugError):
    """A provider plugin could not be loaded (raised only with ``CHATPLUG_STRICT_PLUGINS=1``;
    otherwise the reason is recorded in ``registry.errors``)."""

    code = "plugin_load_error"

    def __init__(self, message: str, *, entry_point: str):
        super().__init__(message)
        self.entry_point = entry_point


class InvalidRequestError(ChatplugError, ValueError):
    """The call was rejected before anything was sent: bad messages, model or parameters.

    ``param`` names the offending field where one is at fault, as OpenAI's errors do
    (``"temperature"``, ``"messages[0].role"``); ``None`` otherwise.
    """

    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, provider: str | None = None,
                 model: str | None = None) -> None:
        super().__init__(message, provider=provider, model=model)
        self.param = param


class ProviderNotFoundError(InvalidRequestError, LookupError):
    """No provider of that name is installed (or it is disabled or failed to load)."""

    code = "provider_not_found"


class ModelNotSupportedError(InvalidRequestError):
    """The provider does not list the requested model."""

    code = "model_not_found"


class ProviderError(ChatplugError):
    """Base class for failures that happened while talking to a provider."""

    code = "provider_error"


class AuthenticationError(ProviderError):
    """No API key is configured for a provider that needs one, or the server refused it.

    ``status_code`` is the HTTP status (401/403) when the server refused the key,
    ``None`` when the key was missing and nothing was sent.
    """

    code = "authentication_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider: str | None = None,
        model: str | None = None,
    ):
        super().__init__(message, provider=provider, model=model)
        self.status_code = status_code


class ProviderHTTPError(ProviderError):
    """The server answered with an HTTP error status.

    ``status_code`` is the status, ``body`` a short excerpt of what it said,
    ``retry_after`` the server's ``Retry-After``/``retry-after-ms`` hint in seconds
    (``None`` without a usable one).  408, 409, 429 and 5xx are retried; other
    statuses are not, and neither is any status the server sent with
    ``x-should-retry: false`` (another gateway that has already retried).

    What the server's error body said, as it said it (``None`` where it said nothing):
    ``upstream_code`` (OpenAI's ``code``, ``"context_length_exceeded"``; Google's
    ``ErrorInfo`` reason), ``upstream_type`` (OpenAI's and Anthropic's ``type``,
    Google's ``status``), ``param`` (OpenAI's ``param``, ``"messages"``) and
    ``upstream_message`` (its whole message, keys masked: what a gateway passes on,
    so that a chain of gateways shows the origin's words once).
    """

    code = "upstream_http_error"
    #: The server's retry hint in seconds, with any status (a 503 too), or ``None``.
    retry_after: float | None = None

    _status_first = True

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        if self.should_retry is False:
            return False
        return self.status_code in (408, 409, 429) or self.status_code >= 500

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        provider: str | None = None,
        model: str | None = None,
        upstream_code: str | None = None,
        upstream_type: str | None = None,
        param: str | None = None,
        upstream_message: str | None = None,
        should_retry: bool | None = None,
    ):
        super().__init__(message, provider=provider, model=model)
        self.status_code = status_code
        self.body = body
        self.upstream_code = upstream_code
        self.upstream_type = upstream_type
        self.param = param
        self.upstream_message = upstream_message
        #: The server's ``x-should-retry`` header: ``False`` makes the error final.
        self.should_retry = should_retry


class RateLimitError(ProviderHTTPError):
    """The server answered 429; ``retry_after`` is its hint in seconds, if it gave one."""

    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        body: str = "",
        retry_after: float | None = None,
        provider: str | None = None,
        model: str | None = None,
        upstream_code: str | None = None,
        upstream_type: str | None = None,
        param: str | None = None,
        upstream_message: str | None = None,
        should_retry: bool | None = None,
    ):
        super().__init__(
            message, status_code=status_code, body=body, provider=provider, model=model,
            upstream_code=upstream_code, upstream_type=upstream_type, param=param,
            upstream_message=upstream_message, should_retry=should_retry,
        )
        self.retry_after = retry_after


class ProviderTimeoutError(ProviderError, TimeoutError):
    """The server did not connect or did not send data within the configured timeout,
    or the call's total deadline passed."""

    code = "timeout"

    retryable = True


class ProviderConnectionError(ProviderError, ConnectionError):
    """The server could not be reached: refused, unresolvable name, TLS failure, reset.

    TLS failures and invalid URLs set ``retryable`` to False: trying again cannot help.
    """

    code = "connection_error"

    retryable = True


class StreamInterruptedError(ProviderError):
    """The reply ended before it was complete (no ``[DONE]`` and no finish reason).

    Raised after the pieces that did arrive were delivered; ``received`` holds
    how many characters of text had arrived, and ``completion`` the
    :class:`chatplug.Completion` so far (its text, the provider that was
    serving), so a caller can tell a cut reply from a whole one.
    """

    code = "stream_interrupted"

    #: The reply as far as it came (set by the call that raised this).
    completion: Completion | None = None

    retryable = True  # only before the first piece reached the caller

    def __init__(
        self,
        message: str,
        *,
        received: int = 0,
        provider: str | None = None,
        model: str | None = None,
    ):
        super().__init__(message, provider=provider, model=model)
        self.received = received


class ProviderResponseError(ProviderError):
    """The server's body is not what its wire format promises (HTML, bad JSON, no choices,
    an error object inside a stream, or a provider plugin that misbehaved)."""

    code = "bad_response"


class ContentFilteredError(ProviderError):
    """The provider's safety filter blocked the prompt before anything was generated
    (Gemini's ``promptFeedback.blockReason``); ``reason`` is the provider's own word
    for why (``SAFETY``, ``PROHIBITED_CONTENT``, ...).  Not retried: the same prompt
    is blocked again.  (A reply cut by a filter after it began ends normally, with
    the finish reason ``content_filter``.)"""

    code = "content_filter"

    def __init__(self, message: str, *, reason: str = "", provider: str | None = None,
                 model: str | None = None) -> None:
        super().__init__(message, provider=provider, model=model)
        self.reason_code = reason


class RouteFailedError(ProviderError):
    """Every entry of a route failed, in every round it tried.

    ``errors`` holds one chatplug error per attempt, oldest first (each with its
    ``provider``, ``model`` and reason); the first line of the message says how
    many entries and rounds were tried.  Retryable if the last errors were.
    """

    code = "route_failed"

    def __init__(self, message: str, *, errors: list[ChatplugError], route: str,
                 rounds: int) -> None:
        super().__init__(message, provider=route)
        self.errors = list(errors)
        self.route = route
        self.rounds = rounds
        self.attempts = tuple(
            f"{error.provider}/{error.model}: {error.reason}" for error in self.errors
        )

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return bool(self.errors) and self.errors[-1].retryable

    def __str__(self) -> str:
        text = self.message
        if self.attempts:
            text += "".join(f"\n  attempt {number}: {reason}"
                            for number, reason in enumerate(self.attempts, 1))
        return text
class StorageError(ChatplugError):
    """One of chatplug's own files (the CLI's logs database, the keys file) cannot be
    read or written: permissions, a full disk, a damaged file."""

    code = "storage_error"
