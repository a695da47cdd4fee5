"""A writer killed with SIGKILL at any moment leaves a readable file with every returned write."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corelay.io.storage import HDF5Storage
from tests.cases import assert_same_tree

_WRITER = """
import sys
import numpy as np
from corelay.io.storage import HDF5Storage
sys.path.insert(0, sys.argv[2])
from test_hdf5_kill import tree

with HDF5Storage(sys.argv[1], "a") as storage:
    for index in range(100_000):
        storage[f"entry-{index}"] = tree(index)
        storage["latest"] = tree(index)  # replaced on every step
        print(index, flush=True)
"""


def tree(index: int) -> Any:
    """The tree written in step ``index``: sizes vary so that kills land inside big writes."""
    size = 2**18 if index % 5 == 0 else 7 + index
    return {
        "index": index,
        "values": np.full(size, index, dtype=np.float64),
        "parts": tuple(np.arange(k + index % 3) for k in range(index % 6)),
        "label": f"step {index}",
    }


# (returned writes to wait for, then extra seconds before SIGKILL)
_KILL_MOMENTS = [(0, 0.0), (1, 0.0), (1, 0.003), (4, 0.001), (10, 0.0), (25, 0.002), (40, 0.0005)]


@pytest.mark.parametrize(("wait_for", "delay"), _KILL_MOMENTS)
def test_killed_writer_loses_nothing_returned(tmp_path: Path, wait_for: int, delay: float) -> None:
    path = tmp_path / "killed.h5"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert writer.stdout is not None
    returned = -1
    while returned + 1 < wait_for:
        line = writer.stdout.readline()
        assert line, "the writer stopped before it was killed"
        returned = int(line)
    time.sleep(delay + random.uniform(0, 0.002))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    returned = max([returned, *(int(line) for line in writer.stdout.read().split())])
    writer.stdout.close()
    if not path.exists():
        assert returned == -1
        return
    with HDF5Storage(path, "r") as storage:
        keys = set(storage.keys())
        for index in range(returned + 1):
            assert_same_tree(storage[f"entry-{index}"], tree(index), f"entry-{index}")
        # The write in progress at the kill is either complete or absent.
        in_progress = f"entry-{returned + 1}"
        if in_progress in keys:
            assert_same_tree(storage[in_progress], tree(returned + 1), in_progress)
        assert keys <= {f"entry-{i}" for i in range(returned + 2)} | {"latest"}
        if returned >= 0:
            latest = storage["latest"]
            assert latest["index"] in (returned, returned + 1)
            assert_same_tree(latest, tree(latest["index"]))


def test_random_kill_moments(tmp_path: Path) -> None:
    """More kill moments, drawn at random; ``CORELAY_KILL_TRIALS`` sets how many."""
    rng = random.Random(int(os.environ.get("CORELAY_KILL_SEED", "0")))
    for trial in range(int(os.environ.get("CORELAY_KILL_TRIALS", "4"))):
        directory = tmp_path / str(trial)
        directory.mkdir()
        test_killed_writer_loses_nothing_returned(
            directory, rng.randint(0, 40), rng.uniform(0, 0.03)
        )


def test_every_returned_write_is_flushed(tmp_path: Path) -> None:
    # Another process sees the write as soon as it returned (the writer stays open).
    path = tmp_path / "flushed.h5"
    storage = HDF5Storage(path, "w")
    storage["key"] = np.arange(5)
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import h5py, sys; f = h5py.File(sys.argv[1], 'r', locking=False); print(f['key'][4])",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    storage.close()
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "4"
