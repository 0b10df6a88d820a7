"""chatplug's benchmark suite: chatplug against a hand-written ``requests`` client.

Run it from the repository root with ``python -m bench`` (``--quick`` for a
smoke run).  It is not part of the test suite: it measures, it does not assert.
See ``bench/README.md`` for what each figure means.

This package imports nothing at import time on purpose: every measurement runs
in a fresh ``python -m bench.worker`` process, and whatever ``bench`` itself
imported would be counted against the client under test.
"""
