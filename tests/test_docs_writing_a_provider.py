"""docs/writing-a-provider.md cannot rot: every fenced block in it is exercised.

- ``# file: <path>`` blocks are written out as a package, which is built and installed
  (``pip install --target``, never into this environment) and then discovered;
- the ``text`` block (the folder tree) must list exactly those files;
- other ``python`` blocks run as scripts against the installed package;
- ``bash`` blocks run line by line: ``chatplug ...`` and ``python -m pytest`` for real
  (URLs pointed at the scripted server), ``pip install -e .`` as the ``--target`` install
  above, and the publishing commands (``python -m build``, ``twine upload``), which need
  the network, are checked against the package instead of run.

A block or a command this test does not know fails it, so the guide cannot grow an
unexercised example.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import TEST_API_KEY

from .conftest import BIN, ROOT

GUIDE = ROOT / "docs" / "writing-a-provider.md"
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_MARK = re.compile(r"^# file: (\S+)\n")
PACKAGE_DIR = "chatplug-acme"
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int

    @property
    def file(self) -> str | None:
        match = FILE_MARK.match(self.text)
        return match.group(1) if match else None


def blocks() -> list[Block]:
    source = GUIDE.read_text(encoding="utf-8")
    return [Block(m.group(1), m.group(2), source.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(source)]


def of_kind(kind: str) -> list[Block]:
    return [b for b in blocks() if _kind(b) == kind]


def _kind(block: Block) -> str:
    if block.file is not None:
        return "file"
    return {"text": "tree", "python": "script", "bash": "shell"}.get(block.language, "unknown")


@dataclass(frozen=True)
class Installed:
    source: Path  # the package folder, as the guide builds it
    site: Path  # where it is installed


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("guide")
    source = root / PACKAGE_DIR
    for block in of_kind("file"):
        assert block.file is not None
        path = source / block.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text, encoding="utf-8")
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    return Installed(source, site)


def environment(installed: Installed, server: ScriptedServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATPLUG_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(PYTHONPATH=str(installed.site), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               CHATPLUG_ACME_URL=server.url, CHATPLUG_ACMENATIVE_URL=server.url,
               CHATPLUG_ACME_API_KEY=TEST_API_KEY, CHATPLUG_ACMENATIVE_API_KEY=TEST_API_KEY)
    return env


def test_every_block_is_of_a_kind_this_test_exercises() -> None:
    kinds = [(_kind(block), block.line) for block in blocks()]
    assert [line for kind, line in kinds if kind == "unknown"] == []
    assert {kind for kind, _ in kinds} == {"file", "tree", "script", "shell"}
    assert {block.file for block in of_kind("file")} == {
        "pyproject.toml", "chatplug_acme/__init__.py", "chatplug_acme/native.py",
        "tests/test_acme.py"}


def tree_paths(text: str) -> set[str]:
    """The files of a ``├──``-drawn folder tree, as paths below its root."""
    paths: set[str] = set()
    parents: list[str] = []
    for line in text.splitlines()[1:]:
        name = re.sub(r"^[│├└─\s]+", "", line)
        depth = (len(line) - len(name)) // 4 - 1
        parents = parents[:depth]
        if name.endswith("/"):
            parents.append(name.rstrip("/"))
        else:
            paths.add("/".join([*parents, name]))
    return paths


def test_the_folder_tree_lists_exactly_the_files() -> None:
    [tree] = of_kind("tree")
    assert tree.text.splitlines()[0] == f"{PACKAGE_DIR}/"
    assert tree_paths(tree.text) == {block.file for block in of_kind("file")}


def test_the_package_installs_and_both_providers_are_discovered(
    installed: Installed, chatplug_server: ScriptedServer
) -> None:
    listing = subprocess.run(
        [str(BIN / "chatplug"), "providers", "--json"], capture_output=True, text=True,
        timeout=60, env=environment(installed, chatplug_server))
    assert listing.returncode == 0, listing.stderr
    assert '"name": "Acme"' in listing.stdout
    assert '"name": "AcmeNative"' in listing.stdout
    assert '"distribution": "chatplug-acme"' in listing.stdout
    assert '"errors": {}' in listing.stdout


@pytest.mark.parametrize("block", of_kind("script"), ids=lambda b: f"line-{b.line}")
def test_python_examples_run(
    block: Block, installed: Installed, chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.text, encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, env=environment(installed, chatplug_server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "an example should show something"
    if "registry.get(" in block.text:
        assert "chatplug_acme supports: (model: str, messages: list, stream: bool, " \
               "temperature: float, max_tokens: int | None)" in result.stdout
        assert "You said: Hello" in result.stdout


def shell_lines() -> Iterator[tuple[int, str]]:
    for block in of_kind("shell"):
        for offset, line in enumerate(block.text.splitlines(), 1):
            if line.strip():
                yield block.line + offset, line


@pytest.mark.parametrize(("line", "command"), list(shell_lines()),
                         ids=[f"line-{n}" for n, _ in shell_lines()])
def test_shell_commands_run_or_are_checked(
    line: int, command: str, installed: Installed, chatplug_server: ScriptedServer
) -> None:
    tokens = shlex.split(command, comments=True)
    env = environment(installed, chatplug_server)
    if tokens[0] == "export":
        variable, _, value = tokens[1].partition("=")
        assert variable in ("CHATPLUG_ACME_API_KEY", "CHATPLUG_ACME_URL"), command
        assert value, command
        if variable == "CHATPLUG_ACME_URL":  # the test server stands in for the deployment
            assert value.startswith("https://")
        return
    if tokens == ["pip", "install", "./chatplug", "pytest"]:
        # chatplug from its checkout; test_the_guide_installs_in_a_fresh_environment runs it.
        assert 'name = "chatplug"' in (ROOT / "pyproject.toml").read_text()
        return
    if tokens == ["cd", PACKAGE_DIR] or tokens == ["pip", "install", "-e", "."]:
        assert (installed.site / "chatplug_acme" / "__init__.py").is_file()
        return
    if tokens[:2] == ["python", "-m"] and tokens[2] in ("build", "twine"):
        # Publishing needs the network; the same build backend made the install above.
        assert 'build-backend = "setuptools.build_meta"' in (
            installed.source / "pyproject.toml").read_text()
        assert tokens[2:] in (["build"], ["twine", "upload", "dist/*"]), command
        return
    if tokens[:3] == ["python", "-m", "pytest"]:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             *tokens[3:]], cwd=installed.source, capture_output=True, text=True,
            timeout=120, env=environment(installed, chatplug_server))
        assert result.returncode == 0, result.stdout[-3000:]
        # The whole kit ran (62 checks for Acme today, async ones included), none skipped.
        ran = re.search(r"\b(\d+) passed\b", result.stdout)
        assert ran is not None, result.stdout[-500:]
        assert int(ran.group(1)) >= 60, result.stdout[-500:]
        assert "skipped" not in result.stdout, result.stdout[-500:]
        return
    if tokens[0] == "chatplug":
        result = subprocess.run([str(BIN / "chatplug"), *tokens[1:]], capture_output=True,
                                text=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        if tokens[1] == "chat":
            assert result.stdout == "You said: Hello\n"
        elif "--check" in tokens:
            assert "reachable" in result.stdout
        else:
            assert "chatplug-acme 0.1.0" in result.stdout
        return
    pytest.fail(f"docs/writing-a-provider.md line {line}: no test knows the command {command!r}")


@pytest.mark.slow
def test_the_guide_installs_in_a_fresh_environment(installed: Installed, tmp_path: Path) -> None:
    """The guide's install lines, as written, in a fresh venv beside a copy of the chatplug
    checkout: chatplug from the checkout, then the package, which then is discovered."""
    import shutil

    from .test_readme import copy_checkout, fresh_venv

    work = tmp_path / "work"
    if not copy_checkout(work / "chatplug"):
        pytest.skip("needs the git checkout (its tracked files are what a clone holds)")
    shutil.copytree(installed.source, work / PACKAGE_DIR)
    env = fresh_venv(tmp_path)
    [block] = [b for b in of_kind("shell") if "pip install" in b.text]
    lines = block.text.splitlines()
    install = lines[: lines.index("pip install -e .") + 1]
    assert install[0] == "pip install ./chatplug pytest"
    result = subprocess.run(["bash", "-ec", "\n".join([*install, "chatplug providers Acme"])],
                            cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "chatplug-acme 0.1.0" in result.stdout
