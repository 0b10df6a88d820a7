"""Active checks of providers' endpoints (``chatplug providers --check``).

Each provider's base URL plus its optional ``check_path`` attribute (an API
endpoint that answers a plain ``GET``: OpenAI's ``/models``, Ollama's
``/api/tags``) gets one unauthenticated ``GET`` through the registry's
transport, concurrently, within one deadline (a proxy's CONNECT answer and the
headers included).  A check passes only where a chat would not fail for the same
reason:

- ``reachable``: the endpoint answered 2xx (with a ``check_path``: not a web
  page), 405 or 429; without a ``check_path`` only the host is checked, and the
  detail says so;
- ``auth needed``: the provider needs a key and none is configured (then
  nothing is sent at all), or the server asks for one (401/403) and none is set;
- ``failing``: refused, unresolvable, not HTTP, not TLS, TLS failure, no answer
  in time, 5xx, a redirect (chats do not follow one), and at a ``check_path`` a
  404 or an HTML page (the URL points at a web server, not the API).

No key is ever sent, so none can reach a host other than the provider's; and
redirects are not followed.  A 401/403 when a key *is* configured counts as
reachable: the key itself is not verified (that would mean sending it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ChatplugError, ProviderTimeoutError
from ..naming import env_name

if TYPE_CHECKING:
    from ..transport.client import Transport
    from .provider import Provider

__all__ = ["AUTH_NEEDED", "FAILING", "REACHABLE", "ProbeResult", "probe", "probe_all"]

REACHABLE = "reachable"
AUTH_NEEDED = "auth needed"
FAILING = "failing"
#: Default seconds to connect and, separately, to receive the headers.
DEFAULT_TIMEOUT = 5.0
#: Probes running at once; enough for every installed provider in one round.
MAX_WORKERS = 8


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of probing one provider.

    :ivar url: the URL probed (the provider's URL when nothing was sent).
    :ivar latency_ms: time until the headers arrived (or the failure), ``None``
        when nothing was sent.
    :ivar http_status: the status the server answered with, if it answered.
    :ivar detail: one line saying why, in the user's terms.
    """

    provider: str
    url: str
    status: str
    latency_ms: float | None
    http_status: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_path(provider: Provider) -> str:
    check_path = getattr(provider.plugin, "check_path", "") or ""
    if not isinstance(check_path, str) or (check_path and not check_path.startswith("/")):
        raise ValueError(
            f"check_path must be a path starting with '/', not {check_path!r}; "
            f"fix the provider module {provider.module_name}"
        )
    return check_path


def _classify(provider: Provider, status: int, reason: str, content_type: str,
              checked_api: bool) -> tuple[str, str]:
    said = f"HTTP {status} {reason}".strip()
    if status in (401, 403):
        if provider.api_key_configured:
            return REACHABLE, f"{said} without a key; a key is configured (not verified)"
        return AUTH_NEEDED, f"{said}: the server wants a key; set {provider.api_key_variable}"
    if status >= 500:
        return FAILING, f"{said}: the server fails"
    if 300 <= status < 400:
        return FAILING, (f"{said}: the URL redirects, and chats do not follow redirects; "
                         f"set {env_name(provider.name, 'URL')} to the final address")
    if not checked_api:
        return REACHABLE, f"{said} (the host answers; the provider names no API path to check)"
    if status == 404:
        return FAILING, (f"{said}: no API at this URL; check {env_name(provider.name, 'URL')}")
    if content_type == "text/html" and 200 <= status < 300:
        return FAILING, (f"{said}, but a web page (HTML), not the API; check "
                         f"{env_name(provider.name, 'URL')}")
    if 200 <= status < 300 or status in (405, 429):
        return REACHABLE, said
    return FAILING, f"{said}: the API refuses a plain request"


def probe(provider: Provider, transport: Transport, *, timeout: float = DEFAULT_TIMEOUT
          ) -> ProbeResult:
    """Probe one provider; never raises (a failure is a ``failing`` result).

    :param timeout: seconds to connect, and again to receive the headers; the
        whole probe ends within ``2 * timeout``.
    """
    if provider.needs_auth and not provider.api_key_configured:
        return ProbeResult(provider.name, provider.url, AUTH_NEEDED, None, None,
                           f"set {provider.api_key_variable} (not probed: no key configured)")
    try:
        check_path = _check_path(provider)
    except ValueError as exc:
        return ProbeResult(provider.name, provider.url, FAILING, None, None, str(exc))
    url = provider.url + check_path
    transport.session  # noqa: B018  # made (and requests imported) before the clock starts
    started = time.perf_counter()
    # One deadline for everything: a dribbling proxy or server ends at it.
    client = transport.client(provider=provider.name, deadline=time.monotonic() + 2 * timeout)
    client.read_timeout = timeout
    try:
        reply = client.request("GET", url, headers={"Accept": "application/json, */*"},
                               connect_timeout=timeout)
    except ChatplugError as error:
        latency = round((time.perf_counter() - started) * 1000, 1)
        return ProbeResult(provider.name, url, FAILING, latency, None, _why(error, timeout))
    latency = round((time.perf_counter() - started) * 1000, 1)
    with reply:
        status, detail = _classify(provider, reply.status_code, reply.reason,
                                   reply.content_type, bool(check_path))
    return ProbeResult(provider.name, url, status, latency, reply.status_code, detail)


def _why(error: ChatplugError, timeout: float) -> str:
    if isinstance(error, ProviderTimeoutError):
        return f"no answer within {timeout:g} s"
    # The first sentence says what happened; the rest is advice for a chat call.
    return error.message.split(". ", 1)[0].rstrip(".")


def probe_all(
    providers: Sequence[Provider],
    transport: Transport,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = MAX_WORKERS,
) -> list[ProbeResult]:
    """Probe every provider concurrently; results in the order given.

    The whole round ends within about ``2 * timeout`` seconds (connect, then
    headers); a probe still running then is reported as failing.
    """
    if not providers:
        return []
    transport.session  # noqa: B018  # one session for every probe, made before they start
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(providers))),
                              thread_name_prefix="chatplug-probe")
    try:
        futures = [pool.submit(_safe_probe, p, transport, timeout) for p in providers]
        wait(futures, timeout=2 * timeout + 1)
        results = []
        for provider, future in zip(providers, futures, strict=True):
            if future.done():
                results.append(future.result())
            else:
                results.append(ProbeResult(provider.name, provider.url, FAILING, None, None,
                                           f"no answer within {2 * timeout + 1:g} s"))
        return results
    finally:
        # Probes still running end by their own timeouts; nobody waits for them.
        pool.shutdown(wait=False, cancel_futures=True)


def _safe_probe(provider: Provider, transport: Transport, timeout: float) -> ProbeResult:
    try:
        return probe(provider, transport, timeout=timeout)
    except Exception as exc:  # a bug here must not cost the other providers' results
        return ProbeResult(provider.name, provider.url, FAILING, None, None,
                           f"the probe failed: {type(exc).__name__}: {exc}")
