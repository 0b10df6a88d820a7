"""Routes: one call, several providers, with fallback and load-spreading.

:class:`Route` has the caller side of a provider (``create``, ``complete``,
``acreate``, ``acomplete``).  It never duplicates text: the first piece that
reaches the caller commits the call to one provider.  See docs/routes.md.
"""

from __future__ import annotations

from .entries import Entry, RouteSpec, parse_entry, parse_routes
from .route import PreparedRoute, Route, RouteCall
from .state import STRATEGIES

__all__ = ["STRATEGIES", "Entry", "PreparedRoute", "Route", "RouteCall", "RouteSpec",
           "parse_entry", "parse_routes"]
