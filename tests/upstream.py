"""The corelay 1.0.0 fixture files, and a corelay 1.0.0 interpreter for interop tests."""

import json
import os
import subprocess
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "upstream"


def fixture_description() -> dict[str, Any]:
    """The description of the fixture files that ``make_fixtures.py`` wrote beside them."""
    description: dict[str, Any] = json.loads((FIXTURES / "fixtures.json").read_text())
    return description


def decode(described: dict[str, Any]) -> Any:
    """Rebuilds a value from its JSON description in ``fixtures.json``."""
    kind = described["kind"]
    if kind == "ndarray":
        return np.array(described["value"], dtype=described["dtype"]).reshape(described["shape"])
    if kind == "numpy_scalar":
        return np.array(described["value"], dtype=described["dtype"])[()]
    if kind in ("dict", "OrderedDict"):
        return OrderedDict((key, decode(value)) for key, value in described["items"])
    if kind in ("tuple", "list"):
        items = [decode(item) for item in described["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "None":
        return None
    if kind == "bytes":
        return bytes.fromhex(described["value"])
    return described["value"]


def upstream_python() -> str:
    """The interpreter with corelay 1.0.0 installed, from ``CORELAY_UPSTREAM_PYTHON``.

    ``.ci/run`` installs corelay 1.0.0 into a venv of its own and sets the variable, so these
    tests run in CI; elsewhere they skip, saying why.
    """
    python = os.environ.get("CORELAY_UPSTREAM_PYTHON")
    if not python:
        pytest.skip("CORELAY_UPSTREAM_PYTHON is not set (.ci/run sets it to a corelay 1.0.0 venv)")
    return python


def run_upstream(script: str, *args: str) -> Any:
    """Runs ``script`` with corelay 1.0.0's interpreter and returns the JSON it prints."""
    completed = subprocess.run(
        [upstream_python(), "-c", script, *args],
        # Without PYTHONPATH and away from this checkout, so that it imports corelay 1.0.0.
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        cwd=FIXTURES.anchor,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)
