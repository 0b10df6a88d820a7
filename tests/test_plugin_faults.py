"""Holes 9 and 12 of issue 8: plugin code that misbehaves at call time.

A plugin's cleanup that raises, or that ignores ``GeneratorExit``, on an early
close; a provider that yields forever; an observer that blocks; a provider that
raises ``SystemExit`` or a ``BaseException`` of its own.  Each ends as chatplug's
error naming the plugin, within the call's deadline, while ``KeyboardInterrupt``
and asyncio's cancellation still go through.  Only the public API is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from chatplug import (
    ChatplugError,
    ProviderResponseError,
    ProviderTimeoutError,
    Registry,
    hookimpl,
)

MESSAGES = [{"role": "user", "content": "hello"}]


def provider_of(function: Callable[..., Any], registry: Registry | None = None) -> Any:
    """``function`` as the completion function of a plugin "chatplug-odd 1.0"."""
    registry = registry or Registry(entry_points=())
    return registry.register(
        SimpleNamespace(url="http://127.0.0.1:9", model=["m"], supports_stream=True,
                        needs_auth=False, create_completion=hookimpl(function)),
        "Odd", distribution="chatplug-odd", version="1.0")


def cleanup_raises(model: str, messages: list[Any], stream: bool) -> Iterator[str]:
    try:
        yield "one"
        yield "two"
    finally:
        raise KeyError("cleanup state")


def ignores_generator_exit(model: str, messages: list[Any], stream: bool) -> Iterator[str]:
    try:
        yield "one"
        yield "two"
    except GeneratorExit:
        yield "not closing"


# -- hole 9: cleanup errors on an early close ----------------------------------------------


@pytest.mark.parametrize("function", [cleanup_raises, ignores_generator_exit])
def test_a_plugins_failing_cleanup_on_early_close_is_reported_as_its_bug(
        function: Callable[..., Iterator[str]]) -> None:
    stream = provider_of(function).create(messages=MESSAGES, stream=True)
    assert next(stream) == "one"
    with pytest.raises(ProviderResponseError, match=r"bug in the plugin chatplug-odd 1\.0") as info:
        stream.close()
    assert info.value.provider == "Odd"
    with (pytest.raises(ProviderResponseError, match="closing its reply"),
          provider_of(function).create(messages=MESSAGES, stream=True) as again):
        assert next(again) == "one"


# -- hole 12: the deadline bounds plugin code; BaseException from plugin code -------------


def forever(model: str, messages: list[Any], stream: bool) -> Iterator[str]:
    while True:
        yield "x"


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_that_yields_forever_ends_at_the_deadline(stream: bool) -> None:
    provider = provider_of(forever)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="deadline passed"):
        if stream:
            for _ in provider.create(messages=MESSAGES, stream=True, timeout=1):
                pass
        else:
            provider.create(messages=MESSAGES, timeout=1)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("hook", ["chatplug_on_request", "chatplug_on_response"])
def test_an_observer_that_blocks_cannot_hold_a_call_past_its_deadline(hook: str) -> None:
    release = threading.Event()

    def block(provider: str) -> None:
        release.wait(10)

    block.__name__ = hook
    registry = Registry(entry_points=())
    registry.register_observer(SimpleNamespace(**{hook: hookimpl(block)}), "blocker")

    def instant(model: str, messages: list[Any], stream: bool) -> Iterator[str]:
        yield "ok"

    provider = provider_of(instant, registry)
    started = time.monotonic()
    try:
        # A timeout is fair too: the observer used the whole deadline before the call began.
        with contextlib.suppress(ProviderTimeoutError):
            assert provider.create(messages=MESSAGES, timeout=1) == "ok"
        assert time.monotonic() - started < 2
    finally:
        release.set()


class PluginAbort(BaseException):
    """A plugin's own BaseException subclass."""


def raising(exception: BaseException) -> Callable[..., Iterator[str]]:
    def create_completion(model: str, messages: list[Any], stream: bool) -> Iterator[str]:
        yield "partial"
        raise exception

    return create_completion


@pytest.mark.parametrize("exception", [SystemExit(3), PluginAbort("gave up"),
                                       GeneratorExit()])
def test_system_exit_and_foreign_base_exceptions_from_plugin_code_are_chatplug_errors(
        exception: BaseException) -> None:
    provider = provider_of(raising(exception))
    with pytest.raises(ProviderResponseError, match=r"bug in the plugin chatplug-odd 1\.0") as info:
        provider.create(messages=MESSAGES)
    assert type(exception).__name__ in str(info.value)
    pieces: list[str] = []
    with pytest.raises(ChatplugError):
        for piece in provider.create(messages=MESSAGES, stream=True):
            pieces.append(piece)
    assert pieces == ["partial"]


@pytest.mark.parametrize("exception", [KeyboardInterrupt(), asyncio.CancelledError()])
def test_keyboard_interrupt_and_cancellation_still_go_through(
        exception: BaseException) -> None:
    provider = provider_of(raising(exception))
    with pytest.raises(type(exception)):
        provider.create(messages=MESSAGES)
