"""A writer killed with SIGKILL at any moment leaves a readable file with every returned write.

Run for every backend. ``CORELAY_KILL_TRIALS`` sets how many random kill moments
``test_random_kill_moments`` tries, and ``CORELAY_FIRST_WRITE_TRIALS`` how many kills
``test_kill_while_creating_a_new_file`` tries (``CORELAY_KILL_SEED`` seeds them).
"""

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.backends import Backend
from tests.cases import assert_same_tree

_ROOT = Path(__file__).parent.parent

_WRITER = """
import sys
from tests.backends import BACKENDS
from tests.test_kill import tree

backend = {backend.name: backend for backend in BACKENDS}[sys.argv[2]]
print(-1, flush=True)  # about to open (and, for a new path, create) the file
with backend.open(sys.argv[1], "a") as storage:
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


def _kill_writer(backend: Backend, path: Path, wait_for: int, delay: float) -> int:
    """Starts a writer, kills it after ``wait_for`` returned writes and ``delay`` seconds.

    Returns:
        The index of the last write that returned.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), backend.name],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert writer.stdout is not None
    returned = int(writer.stdout.readline())  # -1: the writer is about to open the file
    while returned + 1 < wait_for:
        line = writer.stdout.readline()
        assert line, "the writer stopped before it was killed"
        returned = int(line)
    time.sleep(delay + random.uniform(0, 0.002))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    returned = max([returned, *(int(line) for line in writer.stdout.read().split())])
    writer.stdout.close()
    return returned


def _check_after_kill(backend: Backend, path: Path, wait_for: int, delay: float) -> None:
    returned = _kill_writer(backend, path, wait_for, delay)
    if not path.exists():
        assert returned == -1
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a torn last pickle record
        storage = backend.open(path, "r")
    with storage:
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
    # The file takes new writes, and keeps them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with backend.open(path, "a") as storage:
            storage["after-kill"] = tree(7)
    with backend.open(path, "r") as storage:
        assert_same_tree(storage["after-kill"], tree(7))


# (returned writes to wait for, then extra seconds before SIGKILL)
_KILL_MOMENTS = [(0, 0.0), (1, 0.0), (1, 0.003), (4, 0.001), (10, 0.0), (25, 0.002), (40, 0.0005)]


@pytest.mark.parametrize(("wait_for", "delay"), _KILL_MOMENTS)
def test_killed_writer_loses_nothing_returned(
    backend: Backend, store_path: Path, wait_for: int, delay: float
) -> None:
    _check_after_kill(backend, store_path, wait_for, delay)


def test_random_kill_moments(backend: Backend, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CORELAY_KILL_SEED", "0")))
    for trial in range(int(os.environ.get("CORELAY_KILL_TRIALS", "4"))):
        path = tmp_path / f"{trial}{backend.suffix}"
        _check_after_kill(backend, path, rng.randint(0, 40), rng.uniform(0, 0.03))


def test_kill_while_creating_a_new_file(backend: Backend, tmp_path: Path) -> None:
    """Kills while the file is created and first written: the path then opens with ``'a'``
    (and ``'r'`` if it exists), holding every returned write."""
    rng = random.Random(int(os.environ.get("CORELAY_KILL_SEED", "0")))
    for trial in range(int(os.environ.get("CORELAY_FIRST_WRITE_TRIALS", "10"))):
        path = tmp_path / f"new-{trial}{backend.suffix}"
        _check_after_kill(backend, path, 0, rng.uniform(0, 0.04))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with backend.open(path, "a") as storage:
                storage["again"] = 1
