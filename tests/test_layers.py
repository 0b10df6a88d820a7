"""Layers point one way (docs/architecture.md, "Layers"): read from the source with ``ast``.

An import under ``if TYPE_CHECKING:`` is for the type checker only and creates no
dependency at run time, so it is not counted; every other import is, wherever it
stands (a function-level import too).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"

#: ``chatplug.<layer>`` -> the layers it must never import.
RULES: dict[str, frozenset[str]] = {
    # Parameter validation is call validation: calls/ stands below the registry.
    "calls": frozenset({"plugins", "routes", "server", "cli", "batch"}),
    "routes": frozenset({"plugins", "server", "cli", "batch"}),
    "wire": frozenset({"calls", "routes", "plugins", "server", "cli", "batch"}),
    # Only the command line talks to the terminal; nothing in the library imports it.
    **{layer: frozenset({"cli"}) for layer in
       ("plugins", "server", "batch", "logs", "keys", "hooks")},
    # The settings are read by the gateway, never the other way round.
    "settings": frozenset({"cli", "server"}),
    # Error bodies are parsed at the transport's own level (transport/bodies.py).
    "transport": frozenset({"cli", "wire"}),
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(source: str, module: str, *, package: bool = False) -> set[str]:
    """The ``chatplug.*`` modules ``source`` (the module ``module``) imports at run time."""
    parts = module.split(".")
    base_package = parts if package else parts[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    target = base_package[:len(base_package) - child.level + 1]
                    target = target + (child.module.split(".") if child.module else [])
                else:
                    target = (child.module or "").split(".")
                found.add(".".join(target))
                found.update(".".join([*target, alias.name]) for alias in child.names)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            visit(child)

    visit(ast.parse(source))
    return {name for name in found if name.startswith("chatplug.")}


@functools.cache
def layer_imports() -> dict[str, set[tuple[str, str]]]:
    """``layer -> {(importing file, imported layer)}`` over every module of core/."""
    graph: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(CORE.rglob("*.py")):
        relative = path.relative_to(CORE).with_suffix("")
        parts = list(relative.parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        if not parts:
            continue
        layer = parts[0]
        for name in imported(path.read_text(encoding="utf-8"), ".".join(["chatplug", *parts]),
                             package=package):
            target = name.split(".")[1]
            if target != layer:
                graph.setdefault(layer, set()).add((str(relative), target))
    return graph


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layers_point_one_way(layer: str) -> None:
    broken = sorted((source, target) for source, target in layer_imports().get(layer, ())
                    if target in RULES[layer])
    assert broken == [], f"{layer}/ imports what stands above it: {broken}"


def test_the_reader_sees_relative_function_level_and_absolute_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ..plugins.params import ParameterSet\n"
        "import chatplug.server\n"
        "def late():\n"
        "    from .. import routes\n"
        "if TYPE_CHECKING:\n"
        "    from ..cli import main\n"
    )
    found = imported(source, "chatplug.calls.provider")
    assert {"chatplug.plugins.params", "chatplug.server", "chatplug.routes"} <= found
    assert not any(name.startswith("chatplug.cli") for name in found)
    assert "chatplug.calls.params" in imported("from .params import X\n", "chatplug.calls",
                                               package=True)
