"""One call, from validation to the typed result.

:class:`~chatplug.calls.provider.Provider` validates a call into a
:class:`~chatplug.calls.prepared.PreparedCall` (no IO); :class:`~chatplug.calls.run.Call`
runs it (attempts, retries, deadline, cancellation, observers) and assembles a
:class:`~chatplug.calls.completion.Completion`; :class:`~chatplug.calls.stream.Stream`
and :class:`~chatplug.calls.aio.AsyncStream` hand it to sync and async callers.
:class:`~chatplug.calls.caller.Caller` writes ``create``/``complete``/``acreate``/
``acomplete`` once for providers and routes.
"""
