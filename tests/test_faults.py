"""Faults during a write, and files held elsewhere: nothing returned is lost, nothing hangs.

``CORELAY_FAULT_TRIALS`` sets how many SIGINT trials ``test_ctrl_c_during_writes`` runs, and
``CORELAY_FSIZE_LEVELS`` how many file-size limits ``test_file_size_limit_keeps_old_values``
tries.
"""

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from corelay.io import journal
from corelay.io._hdf5 import write as hdf5_write
from corelay.io.journal import JournaledFile, journal_path
from corelay.io.storage import HDF5Storage, Mode, PickleStorage
from tests.backends import FILE_BACKENDS, Backend
from tests.cases import assert_same_tree


@pytest.fixture(params=FILE_BACKENDS, ids=[backend.name for backend in FILE_BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The file backends: locks, file-size limits and held files are about single files."""
    selected: Backend = request.param
    return selected


_ROOT = Path(__file__).parent.parent
_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}


def _run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---------------------------------------------------------------- an exception at each step

_OLD: dict[str, Any] = {
    "values": np.arange(50_000.0),
    "label": "old",
    "parts": (np.ones(3), [1, 2]),
}
_NEW: dict[str, Any] = {"values": -np.arange(80_000.0), "label": "new", "more": {"a": np.zeros(7)}}


class _InjectedError(Exception):
    """The fault injected into a step of a write."""


@contextmanager
def _fault_at(step: int | None, error: BaseException) -> Generator[list[int]]:
    """Makes the ``step``-th call to any step of a write raise ``error`` (``None``: counts)."""
    calls = [0]
    targets: list[tuple[Any, str]] = [
        (hdf5_write, "create_group"),
        (hdf5_write, "create_dataset"),
        (hdf5_write, "set_str_attr"),
        (hdf5_write, "unlink"),
        (hdf5_write, "move"),
        (h5py.File, "flush"),
        (JournaledFile, "write"),
        (JournaledFile, "truncate"),
        (JournaledFile, "flush"),
        (os, "pwrite"),
        (os, "pwritev"),
        (os, "ftruncate"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == step:
                raise error
            return real(*args, **kwargs)

        return call

    for owner, name, real in originals:
        setattr(owner, name, wrap(real))
    try:
        yield calls
    finally:
        for owner, name, real in originals:
            setattr(owner, name, real)


def _which(value: Any) -> Any:
    """The tree, old or new, that ``value`` is (never a mix of both)."""
    return _NEW if value["label"] == "new" else _OLD


def _count_steps(tmp_path: Path) -> int:
    with HDF5Storage(tmp_path / "count.h5", "w") as storage:
        storage["key"] = _OLD
        with _fault_at(None, _InjectedError()) as calls:
            storage["key"] = _NEW
    return calls[0]


@pytest.mark.parametrize("error", [_InjectedError("step failed"), KeyboardInterrupt()])
def test_an_exception_at_any_step_of_a_replacement(tmp_path: Path, error: BaseException) -> None:
    steps = _count_steps(tmp_path)
    assert steps > 20
    for step in range(1, steps + 1):
        path = tmp_path / f"{step}.h5"
        with HDF5Storage(path, "w") as storage:
            storage["key"] = _OLD
            storage["other"] = (1, "x")
            failed = False
            with _fault_at(step, error):
                try:
                    storage["key"] = _NEW
                except type(error):
                    failed = True
            # The old value (or the new one, if the step came once its journal was complete)
            # and a usable storage, in this process...
            held = _which(storage["key"]) if failed else _NEW
            assert_same_tree(storage["key"], held, f"step {step}")
            assert_same_tree(storage["other"], (1, "x"))
            storage["after"] = np.arange(4)
            assert sorted(storage.keys()) == ["after", "key", "other"]
        # ...and in the file.
        with HDF5Storage(path, "r") as storage:
            assert_same_tree(storage["key"], held, f"step {step}")
            assert_same_tree(storage["after"], np.arange(4))
        with h5py.File(path, "r") as file:
            assert sorted(file) == ["after", "key", "other"], step
        assert not journal_path(path).exists()


def test_a_failed_first_write_of_a_key_leaves_no_key(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with HDF5Storage(path, "w") as storage:
        storage["kept"] = 1
        with _fault_at(3, _InjectedError()), pytest.raises(_InjectedError):
            storage["new/nested"] = _NEW
        assert "new" not in storage and list(storage.keys()) == ["kept"]
        storage["new/nested"] = _NEW
        assert_same_tree(storage["new/nested"], _NEW)


# ------------------------------------------------------------------ disk full, size limits

_FSIZE_WRITER = """
import resource, signal, sys
import numpy as np
from corelay.io.storage import HDF5Storage, PickleStorage

path, kind, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
opener = HDF5Storage if kind == "hdf5" else PickleStorage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
failures = 0
storage = opener(path, "a")


def attempt(key, value):
    global failures, storage
    try:
        storage[key] = value
        return True
    except OSError:
        failures += 1
        # A PickleStorage whose failed record could not be cut off closes itself: reopened.
        if kind == "pickle" and storage.io.closed:
            storage = opener(path, "a")
        return False


for step in range(3):
    if attempt("key", {"values": np.full(30_000 + step, step), "step": step}):
        print("returned", step, flush=True)
    if attempt("extra", np.arange(20_000 + step)):
        print("extra", step, flush=True)
    # The storage stays usable: every value is readable, in this process, after a failure.
    assert storage["kept"] == "kept"
    value = storage["key"]
    assert value["step"] in (-1, *range(step + 1)), value
    assert (value["values"] == (value["step"] if value["step"] >= 0 else 1)).all()
try:
    storage.close()
except OSError:
    failures += 1
print("failures", failures, flush=True)
"""


def test_file_size_limit_keeps_old_values(backend: Backend, tmp_path: Path) -> None:
    """``RLIMIT_FSIZE`` at many levels around the size of the file: each write returns or
    fails, and every value that was there, or was written, stays readable."""
    levels = int(os.environ.get("CORELAY_FSIZE_LEVELS", "20"))
    base = tmp_path / f"base{backend.suffix}"
    with backend.open(base, "w") as storage:
        storage["kept"] = "kept"
        storage["key"] = {"values": np.full(30_000, 1), "step": -1}
    size = base.stat().st_size
    failing = 0
    for level in range(levels):
        path = tmp_path / f"{level}{backend.suffix}"
        path.write_bytes(base.read_bytes())
        limit = size + level * 1_100_000 // levels  # up to what all writes need, and past it
        done = _run(_FSIZE_WRITER, str(path), backend.name, str(limit))
        assert done.returncode == 0, done.stderr
        lines = done.stdout.split()
        failing += int(lines[-1]) > 0
        returned = [int(lines[i + 1]) for i, word in enumerate(lines) if word == "returned"]
        extras = [int(lines[i + 1]) for i, word in enumerate(lines) if word == "extra"]
        with backend.open(path, "r") as storage:
            assert storage["kept"] == "kept"
            value = storage["key"]
            assert value["step"] == (returned[-1] if returned else -1), (level, done.stdout)
            step = value["step"]
            expected = np.full(30_000 + step, step) if step >= 0 else np.full(30_000, 1)
            np.testing.assert_array_equal(value["values"], expected)
            if extras:
                np.testing.assert_array_equal(storage["extra"], np.arange(20_000 + extras[-1]))
            else:
                assert "extra" not in storage
        with backend.open(path, "a") as storage:
            storage["after"] = 1
        assert not journal_path(path).exists()
    assert failing >= levels // 2  # the limits did bite


# ----------------------------------------------------------------------- Ctrl-C during writes

_SIGINT_WRITER = """
import os, random, signal, sys, threading, time
import numpy as np
from corelay.io.storage import HDF5Storage, PickleStorage

path, kind, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
opener = HDF5Storage if kind == "hdf5" else PickleStorage
rng = random.Random(int(sys.argv[4]))
interrupted = 0
with opener(path, "w") as storage:
    storage["key"] = np.full(10, -1)
    latest = -1
    for trial in range(trials):
        timer = threading.Timer(rng.uniform(0, 0.004), os.kill, (os.getpid(), signal.SIGINT))
        try:
            timer.start()
            storage["key"] = np.full(100_000 + trial % 7, trial)
            latest = trial
            timer.join()
            time.sleep(0.001)  # the pending signal is handled inside this block
        except KeyboardInterrupt:
            interrupted += 1
            timer.join()
        value = storage["key"]
        assert value[0] in (latest, trial), (value[0], latest, trial)
        latest = int(value[0])
        storage["other"] = trial  # still usable
    print(latest, interrupted, flush=True)
"""


def test_ctrl_c_during_writes(backend: Backend, tmp_path: Path) -> None:
    trials = int(os.environ.get("CORELAY_FAULT_TRIALS", "60"))
    path = tmp_path / f"f{backend.suffix}"
    done = _run(_SIGINT_WRITER, str(path), backend.name, str(trials), "0")
    assert done.returncode == 0, done.stderr
    latest, interrupted = map(int, done.stdout.split())
    assert interrupted > 0  # the signals did land inside writes
    with backend.open(path, "r") as storage:
        assert int(storage["key"][0]) == latest
        assert storage["other"] == trials - 1


# ------------------------------------------------------------------- files held elsewhere

_HOLDER = """
import sys, time
from tests.backends import BACKENDS
backend = {b.name: b for b in BACKENDS}[sys.argv[2]]
storage = backend.open(sys.argv[1], sys.argv[3])
print("open", flush=True)
sys.stdin.readline()
storage.close()
"""


@contextmanager
def _held_elsewhere(backend: Backend, path: Path, mode: str) -> Generator[int]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), backend.name, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_ENV,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == "open\n"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.is_file()}


@pytest.mark.parametrize("held_as", ["r", "a"])
def test_write_mode_on_a_file_held_elsewhere_changes_nothing(
    backend: Backend, store_path: Path, held_as: Mode
) -> None:
    with backend.open(store_path, "w") as storage:
        storage["key"] = np.arange(5)
    before = _snapshot(store_path)
    # In this process: by another storage.
    with backend.open(store_path, held_as):
        with pytest.raises(BlockingIOError, match=r"in this process \(by a"):
            backend.open(store_path, "w")
        assert _snapshot(store_path) == before
    # In another process: named with its pid.
    with _held_elsewhere(backend, store_path, held_as) as pid:
        with pytest.raises(BlockingIOError, match="another process") as raised:
            backend.open(store_path, "w")
        assert str(store_path) in str(raised.value)
        if held_as == "a" or backend.name == "hdf5":
            assert f"pid {pid}" in str(raised.value)
        assert _snapshot(store_path) == before
    with backend.open(store_path, "r") as storage:
        assert_same_tree(storage["key"], np.arange(5))


def test_one_writer_at_a_time(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "a") as storage:
        storage["key"] = 1
        with pytest.raises(BlockingIOError, match="open for writing in this process"):
            backend.open(store_path, "a")
    with (
        _held_elsewhere(backend, store_path, "a") as pid,
        pytest.raises(
            BlockingIOError, match=f"open for writing in another process \\(pid {pid}\\)"
        ),
    ):
        backend.open(store_path, "a")
    with backend.open(store_path, "a") as storage:  # released when the holder closed
        assert storage["key"] == 1


def test_pickle_readers_beside_one_writer(tmp_path: Path) -> None:
    path = tmp_path / "f.pkl"
    with PickleStorage(path, "a") as writer:
        writer["a"] = 1
        with PickleStorage(path, "r") as reader:
            assert reader["a"] == 1
            writer["b"] = 2
            with pytest.raises(BlockingIOError, match="open for writing in this process"):
                PickleStorage(path, "w")
        assert writer["b"] == 2
    with PickleStorage(path, "r"), pytest.raises(BlockingIOError, match="reading in this"):
        PickleStorage(path, "w")
    assert path.stat().st_size > 0


# --------------------------------------------------------------- FIFOs and other non-files

_OPEN_FIFO = """
import sys
from corelay.io.storage import HDF5Storage, PickleStorage
opener = HDF5Storage if sys.argv[2] == "hdf5" else PickleStorage
for mode in ("r", "a", "w"):
    try:
        opener(sys.argv[1], mode).close()
    except OSError as error:
        print(mode, "refused:", error)
    else:
        print(mode, "opened")
"""


def test_a_fifo_is_refused_at_once(backend: Backend, store_path: Path) -> None:
    os.mkfifo(store_path)
    _assert_refused_at_once(backend, store_path)


def test_a_fifo_as_journal_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with HDF5Storage(path, "w") as storage:
        storage["key"] = 1
    os.mkfifo(journal_path(path))
    _assert_refused_at_once(Backend("hdf5", ".h5", HDF5Storage, ""), path)


def _assert_refused_at_once(backend: Backend, store_path: Path) -> None:
    started = time.monotonic()
    done = _run(_OPEN_FIFO, str(store_path), backend.name, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert "refused" in line and "not a regular" in line, line
    cli = subprocess.run(
        [sys.executable, "-m", "corelay.io", "inspect", str(store_path)],
        env=_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode != 0
    assert "not a regular" in cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr


def test_a_directory_is_refused(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        backend.open(tmp_path, "a")


# ---------------------------------------------------- one process, several handles (h5py too)


def test_h5py_and_storage_side_by_side_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with h5py.File(path, "a") as file:
        storage = HDF5Storage(path, "a")
        file["raw"] = np.arange(3)
        storage["tree"] = {"a": 1}
        assert_same_tree(storage["raw"], np.arange(3))
        assert "tree" in file
        reader = HDF5Storage(path, "r")
        assert_same_tree(reader["tree"], {"a": 1})
        with pytest.raises(BlockingIOError, match=r"in this process \(by h5py.File\)"):
            HDF5Storage(path, "w")
        reader.close()
        storage.close()
        assert "tree" in file  # the file stays open for its other handle
    with HDF5Storage(path, "r") as storage:
        assert sorted(storage.keys()) == ["raw", "tree"]


def test_h5py_read_only_in_this_process_refuses_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    HDF5Storage(path, "w").close()
    with h5py.File(path, "r"), pytest.raises(BlockingIOError, match=r"reading in this process"):
        HDF5Storage(path, "a")


def test_storage_first_then_h5py_is_refused_by_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with HDF5Storage(path, "w") as storage:
        storage["a"] = 1
        with pytest.raises(OSError, match="lock"):
            h5py.File(path, "a")
        assert isinstance(storage.io, h5py.File)
        storage.io["raw"] = 1  # the documented way: the storage's own h5py file
    with HDF5Storage(path, "r") as storage:
        assert storage["raw"] == 1


def test_journal_roll_back_needs_a_journaled_writer(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    HDF5Storage(path, "w").close()
    with h5py.File(path, "r") as file:
        assert not journal.roll_back(file)
