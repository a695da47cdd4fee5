"""corelay.io is POSIX-only: elsewhere its import fails at once, saying why."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "pretend",
    ["import os; os.name = 'nt'", "import sys; sys.platform = 'win32'"],
    ids=["os.name", "sys.platform"],
)
def test_import_on_windows_is_a_clear_import_error(pretend: str) -> None:
    script = (
        f"{pretend}\n"
        "try:\n"
        "    import corelay.io\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "else:\n"
        "    print('imported')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "corelay.io needs a POSIX system" in result.stdout
    assert "fcntl" in result.stdout


def test_import_on_posix_works() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import corelay.io; print('imported')"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "imported"
