"""Behaviour every keyed storage shares: modes, keys, views, closing, and the documented errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.backends import Backend


def test_returned_write_is_visible_to_another_process(backend: Backend, store_path: Path) -> None:
    storage = backend.open(store_path, "w")
    storage["key"] = np.arange(5)  # the storage stays open: the write itself reached the file
    check = subprocess.run(
        [sys.executable, "-c", backend.plain_read, str(store_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    storage.close()
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "4"
