"""Active checks of providers' endpoints (``chatplug providers --check``).

Each provider's base URL (plus its optional ``check_path`` attribute, e.g.
Ollama's ``/api/tags``) gets one unauthenticated ``GET`` through the
registry's transport, concurrently and with a short timeout.  The verdict:

- ``reachable``: the host answered with anything but 401/403 or 5xx (a 404 or
  405 at a base URL still proves the server is up);
- ``auth needed``: the provider needs a key and none is configured (then
  nothing is sent at all), or the server asks for one (401/403) and none is set;
- ``failing``: refused, unresolvable, TLS failure, no answer in time, or 5xx.

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
from ..transport import watchdog

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


def _probe_url(provider: Provider) -> str:
    check_path = getattr(provider.plugin, "check_path", "") or ""
    if not isinstance(check_path, str) or (check_path and not check_path.startswith("/")):
        raise ValueError(
            f"check_path must be a path starting with '/', not {check_path!r}; "
            f"fix the provider module {provider.module_name}"
        )
    return provider.url + check_path


def _classify(provider: Provider, status: int, reason: str) -> tuple[str, str]:
    said = f"HTTP {status} {reason}".strip()
    if status in (401, 403):
        if provider.api_key_configured:
            return REACHABLE, f"{said} without a key; a key is configured (not verified)"
        return AUTH_NEEDED, f"{said}: the server wants a key; set {provider.api_key_variable}"
    if status >= 500:
        return FAILING, f"{said}: the server fails"
    return REACHABLE, said


def probe(provider: Provider, transport: Transport, *, timeout: float = DEFAULT_TIMEOUT
          ) -> ProbeResult:
    """Probe one provider; never raises (a failure is a ``failing`` result).

    :param timeout: seconds to connect, and again to receive the headers.
    """
    if provider.needs_auth and not provider.api_key_configured:
        return ProbeResult(provider.name, provider.url, AUTH_NEEDED, None, None,
                           f"set {provider.api_key_variable} (not probed: no key configured)")
    try:
        url = _probe_url(provider)
    except ValueError as exc:
        return ProbeResult(provider.name, provider.url, FAILING, None, None, str(exc))
    session = transport.session  # made (and requests imported) before the clock starts
    started = time.perf_counter()
    # The watchdog ends the probe at the deadline even if the server dribbles its headers.
    deadline = time.monotonic() + 2 * timeout
    try:
        with watchdog.deadline_scope(deadline):
            response = session.get(
                url, timeout=(timeout, timeout), allow_redirects=False, stream=True,
                verify=transport.verify, headers={"Accept": "*/*"},
                proxies=transport.proxies_for(url),
            )
    except Exception as exc:
        latency = round((time.perf_counter() - started) * 1000, 1)
        client = transport.client(provider=provider.name, deadline=deadline)
        error = client.translate(exc, url=url)
        return ProbeResult(provider.name, url, FAILING, latency, None, _why(error, timeout))
    latency = round((time.perf_counter() - started) * 1000, 1)
    try:
        status, detail = _classify(provider, response.status_code, response.reason or "")
    finally:
        response.close()
    return ProbeResult(provider.name, url, status, latency, response.status_code, detail)


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
