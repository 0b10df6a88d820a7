"""Finding and listing providers imports neither requests nor pydantic."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("requests", "urllib3", "pydantic", "pydantic_settings")


def imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)
    return [m for m in result.stdout.strip().split(",") if m]


def test_getting_a_provider_imports_no_request_machinery() -> None:
    assert imported_after("from chatplug import registry; registry.get('GravityEngine')") == []


def test_listing_providers_and_their_params_imports_no_request_machinery() -> None:
    code = ("from chatplug import registry\n"
            "[(p.name, p.models, p.params, p.parameters) for p in registry.providers()]")
    assert imported_after(code) == []


def test_the_cli_listing_reads_settings_but_never_imports_requests() -> None:
    code = ("import io, contextlib\nfrom chatplug.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['providers'])")
    loaded = imported_after(code)
    assert "requests" not in loaded
    assert "urllib3" not in loaded


def test_every_public_name_imports() -> None:
    import chatplug

    for name in chatplug.__all__:
        assert getattr(chatplug, name) is not None, name
