"""A writer killed with SIGKILL at any moment leaves a readable file with every returned write.

Run for every backend: the keyed storages, HashedHDF5 in a journaled file, and the appends of
HDF5Storage and ZarrStorage.
``CORELAY_KILL_TRIALS`` sets how many random kill moments ``test_random_kill_moments`` tries,
``CORELAY_FIRST_WRITE_TRIALS`` how many kills ``test_kill_while_creating_a_new_file`` tries, and
``CORELAY_APPEND_KILL_TRIALS`` how many kills of an appender
``test_a_killed_appender_keeps_every_returned_batch_whole`` tries (``CORELAY_KILL_SEED`` seeds
them).
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

import h5py
import numpy as np
import pytest

from corelay.io.journal import open_journaled
from corelay.io.storage import HashedHDF5, HDF5Storage, NoDataSource, ZarrStorage
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


def _kill_writer(script: str, args: list[str], wait_for: int, delay: float) -> list[str]:
    """Starts a writer, kills it after ``wait_for`` returned writes and ``delay`` seconds.

    The writer prints one line after each write returned (after a first line ``-1``, printed
    just before it opens the file, when ``wait_for`` counts from it).

    Returns:
        The lines the writer printed completely: a line the kill cut short was never completely
        reported, and its write counts as in progress.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}
    writer = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert writer.stdout is not None
    lines: list[str] = []
    while len(lines) < wait_for:
        line = writer.stdout.readline()
        assert line, "the writer stopped before it was killed"
        lines.append(line)
    time.sleep(delay + random.uniform(0, 0.002))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    lines += writer.stdout.read().splitlines(keepends=True)
    writer.stdout.close()
    return [line for line in lines if line.endswith("\n")]


def _last_returned(backend: Backend, path: Path, wait_for: int, delay: float) -> int:
    """Kills a writer of ``backend``; returns the index of the last write that returned."""
    lines = _kill_writer(_WRITER, [str(path), backend.name], wait_for + 1, delay)
    return max(int(line) for line in lines)


def _check_after_kill(backend: Backend, path: Path, wait_for: int, delay: float) -> None:
    returned = _last_returned(backend, path, wait_for, delay)
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


# ---------------------------------------------------------------------------------- HashedHDF5

# The HashedHDF5 writer: a stream of entries, one entry rewritten at every step, and
# a line with the step and the entry's name after each write returned.
_HASHED_WRITER = """
import sys
import numpy as np
from corelay.io.journal import open_journaled
from corelay.io.storage import HashedHDF5
from tests.test_kill import killed_output, killed_input, KILLED_META

with open_journaled(sys.argv[1], "a") as file:
    store = HashedHDF5(file.require_group("cache"))
    for step in range(100_000):
        store.write(killed_output(step), killed_input(step), KILLED_META)
        store.write(killed_output(step), "latest", KILLED_META)
        print(step, store.entry_name(killed_input(step), KILLED_META), flush=True)
"""

KILLED_META = {"function": "tests.killed", "params": {"n": 3}}


def killed_input(step: int) -> np.ndarray[Any, Any]:
    """The input of the entry written at ``step`` of the killed writer."""
    return np.full(4, step, dtype=np.int64)


def killed_output(step: int) -> Any:
    """The output written at ``step``: sizes vary so that kills land inside big writes."""
    size = 2**17 if step % 4 == 0 else 10 + step
    if step % 3 == 0:
        return (np.full(size, step, dtype=np.float64), (np.arange(step % 5),))
    return np.full(size, step, dtype=np.float32)


# (returned steps to wait for, then extra seconds before SIGKILL)
_HASHED_KILL_MOMENTS = [
    (0, 0.0),
    (1, 0.0),
    (1, 0.002),
    (3, 0.001),
    (8, 0.0),
    (20, 0.003),
    (35, 0.0005),
]


@pytest.mark.parametrize(("wait_for", "delay"), _HASHED_KILL_MOMENTS)
def test_killed_hashed_writer_loses_no_returned_entry(
    tmp_path: Path, wait_for: int, delay: float
) -> None:
    path = tmp_path / "cache.h5"
    returned = [line.split() for line in _kill_writer(_HASHED_WRITER, [str(path)], wait_for, delay)]
    if not path.exists():
        assert not returned
        return
    with open_journaled(path, "r") as file:
        if "cache" not in file:
            assert not returned
            return
        cache = file["cache"]
        assert isinstance(cache, h5py.Group)
        store = HashedHDF5(cache)
        for step_text, name in returned:
            step = int(step_text)
            assert store.entry_name(killed_input(step), KILLED_META) == name
            assert_same_tree(store.read(killed_input(step), KILLED_META), killed_output(step))
        last = len(returned) - 1
        # The write in progress at the kill is complete or absent.
        try:
            in_progress = store.read(killed_input(last + 1), KILLED_META)
        except NoDataSource:
            pass
        else:
            assert_same_tree(in_progress, killed_output(last + 1))
        # The rewritten entry holds the last returned value or the one in progress.
        if returned:
            latest = store.read("latest", KILLED_META)
            candidates = [killed_output(last), killed_output(last + 1)]
            assert any(_same(latest, candidate) for candidate in candidates)


def _same(actual: Any, expected: Any) -> bool:
    try:
        assert_same_tree(actual, expected)
    except AssertionError:
        return False
    return True


# ------------------------------------------------------------------ appends, batch by batch

_APPENDER = """
import sys
from corelay.io.storage import HDF5Storage, ZarrStorage
from tests.test_kill import batch

opener = {"hdf5": HDF5Storage, "zarr": ZarrStorage}[sys.argv[3]]
with opener(sys.argv[1], "a", compression=sys.argv[2] or None) as storage:
    print(-1, flush=True)
    for index in range(100_000):
        storage.append("maps", batch(index))
        print(index, flush=True)
"""

APPENDERS: dict[str, type[HDF5Storage] | type[ZarrStorage]] = {
    "hdf5": HDF5Storage,
    "zarr": ZarrStorage,
}
"""The storages that append, by the name the appender script takes."""


def batch(index: int) -> np.ndarray[Any, Any]:
    """Batch ``index`` of the appender: rows that tell which batch wrote them; sizes vary."""
    rows = 64 if index % 4 == 0 else 1 + index % 5
    return np.full((rows, 3, 64), index, dtype=np.float32)


def check_whole_batches(maps: np.ndarray[Any, Any]) -> int:
    """Checks that ``maps`` holds batches 0, 1, ... of the appender, whole; returns how many."""
    kept = 0
    start = 0
    while start < len(maps):
        expected = batch(kept)
        np.testing.assert_array_equal(maps[start : start + len(expected)], expected)
        start += len(expected)
        kept += 1
    assert start == len(maps)
    return kept


def start_appender(path: Path, storage: str, compression: str = "") -> subprocess.Popen[str]:
    """Starts the appender on ``path``; it prints each batch index once its append returned."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}
    return subprocess.Popen(
        [sys.executable, "-c", _APPENDER, str(path), compression, storage],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("storage", ["hdf5", "zarr"])
@pytest.mark.parametrize("compression", ["", "gzip"])
def test_a_killed_appender_keeps_every_returned_batch_whole(
    tmp_path: Path, compression: str, storage: str
) -> None:
    """Each kill leaves the batches whose append returned, perhaps the next one, whole."""
    opener = APPENDERS[storage]
    rng = random.Random(int(os.environ.get("CORELAY_KILL_SEED", "0")))
    for trial in range(int(os.environ.get("CORELAY_APPEND_KILL_TRIALS", "4"))):
        path = tmp_path / f"append-{trial}.{storage}"
        with opener(path, "w"):
            pass
        lines = _kill_writer(
            _APPENDER,
            [str(path), compression, storage],
            rng.randint(1, 31),
            rng.uniform(0, 0.02),
        )
        returned = max(int(line) for line in lines)
        with opener(path, "r") as reader:
            if "maps" not in reader:
                assert returned == -1
                continue
            maps = reader["maps"]
        kept = check_whole_batches(maps)
        assert returned + 1 <= kept <= returned + 2
        with opener(path, "a") as writer:  # appending goes on after the kill
            grown = writer.append("maps", batch(kept))
        assert grown[0] == len(maps) + len(batch(kept))
        with opener(path, "r") as reader:
            assert check_whole_batches(reader["maps"]) == kept + 1
