"""The documentation's examples run, its references are complete, and Sphinx builds it cleanly."""

import re
import shlex
from pathlib import Path

import pytest

from corelay.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.rst"))

# An rst directive and its indented body; a Markdown fence and its body.
_RST_BLOCK = re.compile(r"^\.\. code-block:: (\w+)\n((?:\n|   .*\n)+)", re.MULTILINE)
_MD_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """The code blocks of ``language`` in ``path``: (line number, dedented code)."""
    text = path.read_text(encoding="utf-8")
    found: list[tuple[int, str]] = []
    pattern = _MD_BLOCK if path.suffix == ".md" else _RST_BLOCK
    for match in pattern.finditer(text):
        if match.group(1) != language:
            continue
        body = match.group(2)
        if path.suffix != ".md":
            body = "\n".join(line[3:] for line in body.splitlines())
        found.append((text.count("\n", 0, match.start(2)) + 1, body.strip("\n") + "\n"))
    return found


def _documents_with(language: str) -> list[Path]:
    return [path for path in [README, *PAGES] if blocks(path, language)]


@pytest.mark.parametrize("path", _documents_with("python"), ids=lambda path: path.name)
def test_python_examples_run(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The blocks of one document run in order, in one namespace, in an empty directory.
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    for line, code in blocks(path, "python"):
        exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
    capsys.readouterr()


@pytest.mark.parametrize("path", _documents_with("console"), ids=lambda path: path.name)
def test_console_examples_run(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    commands = [
        line.removeprefix("$ corelay-io ")
        for _, code in blocks(path, "console")
        for line in code.splitlines()
        if line.startswith("$ corelay-io ")
    ]
    assert commands
    for command in commands:
        assert main(shlex.split(command)) == 0, command
    capsys.readouterr()


def test_readme_first_commands_install_and_run_the_demo() -> None:
    [(_, commands), *_] = blocks(README, "sh")
    assert commands.splitlines()[:2] == [
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/corelay-io demo",
        'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest',
    ]


def test_every_command_is_documented() -> None:
    reference = (DOCS / "cli.rst").read_text(encoding="utf-8")
    for command in ("inspect", "validate", "schema", "demo"):
        assert f"\ncorelay-io {command}\n---" in reference, command
    with pytest.raises(SystemExit):
        main(["--help"])


def test_api_reference_covers_the_public_modules() -> None:
    reference = (DOCS / "api.rst").read_text(encoding="utf-8")
    modules = [
        "corelay.io.storage",
        "corelay.io.tree",
        "corelay.io.hashing",
        "corelay.io.journal",
        "corelay.io.memoize",
        "corelay.io.describe",
        "corelay.io.schemas",
        "corelay.plugboard",
        "corelay.base",
    ]
    for module in modules:
        assert f".. automodule:: {module}\n" in reference, module


def test_schema_pages_include_every_schema() -> None:
    page = (DOCS / "schemas.rst").read_text(encoding="utf-8")
    for schema in sorted((ROOT / "schemas").glob("*.json")):
        assert f".. literalinclude:: ../schemas/{schema.name}\n   :language: json" in page
