"""What a reply cost, in USD, from the ``[prices]`` of ``chatplug.toml``.

One function, :func:`cost_of`, prices a reply's :class:`~chatplug.events.Usage` for the
provider and model that served it; the library (``Completion.cost``), the gateway's usage
ledger and the USD budgets of virtual keys all call it.  A price is looked up as
``"Provider/model"``, then the name the caller asked for (an alias, or the model before
the server named its dated version), then ``"Provider/*"``; provider names match
whatever their case.  :func:`price_list` turns a config file's prices into that lookup,
an alias of ``[models]`` that names one model pricing that model too.

Token kinds (USD per million each): input tokens not read from or written to a cache at
``input``; ``cached_tokens`` at ``cached``; ``cache_creation_tokens`` at
``cache_creation``; output tokens at ``output``, of which ``reasoning_tokens`` at
``reasoning`` (each unset kind falls back as :class:`~chatplug.configfile.Price` says).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..configfile import Price

if TYPE_CHECKING:
    from ..configfile import ConfigFile
    from ..events import Usage

__all__ = ["cost_of", "price_for", "price_list"]

_MILLION = 1_000_000.0


def price_list(config: ConfigFile) -> dict[str, Price]:
    """The prices of ``config``, keyed for :func:`price_for`: its ``[prices]`` as they
    are, plus, for each priced alias of ``[models]`` naming one ``"Provider/model"``,
    that model (unless it has a price of its own)."""
    prices = dict(config.prices)
    for alias, target in config.models.items():
        price = config.prices.get(alias)
        if price is not None and isinstance(target, str) and "/" in target:
            prices.setdefault(target, price)
    return prices


#: The last price list folded to lower case, and its folding (a gateway prices every
#: reply with one list: folded once, not per reply).
_last: tuple[Mapping[str, Price], dict[str, Price]] | None = None


def _folded(prices: Mapping[str, Price]) -> dict[str, Price]:
    global _last
    last = _last
    if last is not None and last[0] is prices:
        return last[1]
    folded = {name.lower(): price for name, price in prices.items()}
    _last = (prices, folded)
    return folded


def price_for(provider: str | None, model: str | None, prices: Mapping[str, Price],
              requested: str | None = None) -> Price | None:
    """The price of ``model`` served by ``provider``: ``"Provider/model"``, else
    ``requested`` (the name asked for: an alias, or the model as named before the server
    said which version served it), else ``"Provider/*"``; ``None`` when none is
    configured."""
    if not prices or not provider:
        return None
    candidates = [f"{provider}/{model}"] if model else []
    if requested:
        candidates += [requested, f"{provider}/{requested}"]
    candidates.append(f"{provider}/*")
    for name in candidates:
        price = prices.get(name)
        if price is not None:
            return price
    # Provider names are case-insensitive (``openai/gpt-4o`` is OpenAI's).
    folded = _folded(prices)
    for name in candidates:
        price = folded.get(name.lower())
        if price is not None:
            return price
    return None


def cost_of(usage: Usage | None, provider: str | None, model: str | None,
            prices: Mapping[str, Price], requested: str | None = None) -> float | None:
    """The cost in USD of a reply that used ``usage``, served by ``provider``'s
    ``model``; ``None`` when no price applies or the server reported no token counts.
    Pure: never raises on counts the server left out (they count as 0)."""
    if usage is None or (usage.prompt_tokens is None and usage.completion_tokens is None):
        return None
    price = price_for(provider, model, prices, requested)
    if price is None:
        return None
    cached = usage.cached_tokens or 0
    creation = usage.cache_creation_tokens or 0
    fresh = max((usage.prompt_tokens or 0) - cached - creation, 0)
    reasoning = usage.reasoning_tokens or 0
    answer = max((usage.completion_tokens or 0) - reasoning, 0)
    total = (fresh * price.input
             + cached * (price.input if price.cached is None else price.cached)
             + creation * (price.input if price.cache_creation is None
                           else price.cache_creation)
             + answer * price.output
             + reasoning * (price.output if price.reasoning is None else price.reasoning))
    return total / _MILLION
