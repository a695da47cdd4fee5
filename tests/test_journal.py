"""Journaled HDF5 files: every flush is committed whole or not at all."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corelay.io import journal
from corelay.io.journal import JournaledFile, journal_path, open_journaled


def test_h5py_round_trip_and_no_journal_left(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with open_journaled(path, "w") as file:
        file["a"] = np.arange(4)
        file.flush()
        del file["a"]
        file["a"] = np.ones(2)
    assert not journal_path(path).exists()
    with open_journaled(path, "a") as file:
        dataset = file["a"]
        assert isinstance(dataset, h5py.Dataset)
        np.testing.assert_array_equal(dataset[()], np.ones(2))
        file["b"] = 1
    with open_journaled(path, "r") as file:
        assert sorted(file) == ["a", "b"]


def test_missing_file_in_read_mode(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_journaled(tmp_path / "missing.h5", "r")


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with open_journaled(path, "w"):
        with pytest.raises(BlockingIOError, match="open for writing in another process"):
            JournaledFile(path, "r+")
        with pytest.raises(BlockingIOError):
            JournaledFile(path, "r")


def _write_journal(path: Path, operations: list[journal.Operation]) -> bytes:
    encoded = journal.encode_journal(operations)
    journal_path(path).write_bytes(encoded)
    return encoded


def test_complete_journal_is_replayed(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    _write_journal(path, [(2, b"ab"), (3, b"XY"), (8, None)])
    with JournaledFile(path, "r") as reader:  # a reader sees the replayed state...
        assert reader.read() == b"01aXY567"
    assert path.read_bytes() == b"0123456789"  # ...without changing the file
    JournaledFile(path, "r+").close()
    assert path.read_bytes() == b"01aXY567"
    assert not journal_path(path).exists()


def test_incomplete_journal_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    encoded = journal.encode_journal([(0, b"new")])
    for cut in range(len(encoded)):  # a writer killed while writing the journal
        path.write_bytes(b"old content")
        journal_path(path).write_bytes(encoded[:cut])
        JournaledFile(path, "r+").close()
        assert path.read_bytes() == b"old content", cut
        assert not journal_path(path).exists()


def test_corrupt_journal_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old content")
    encoded = bytearray(journal.encode_journal([(0, b"new")]))
    encoded[-12] ^= 1
    journal_path(path).write_bytes(bytes(encoded))
    JournaledFile(path, "r+").close()
    assert path.read_bytes() == b"old content"


def test_write_mode_drops_a_stale_journal(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    _write_journal(path, [(0, b"zzz")])
    JournaledFile(path, "w").close()
    assert path.read_bytes() == b""


_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 300), st.binary(min_size=1, max_size=40)),
        st.tuples(st.just("truncate"), st.integers(0, 300), st.just(b"")),
        st.tuples(st.just("flush"), st.just(0), st.just(b"")),
    ),
    max_size=25,
)


def _apply_to_model(model: bytearray, operation: tuple[str, int, bytes]) -> None:
    kind, offset, data = operation
    if kind == "write":
        if len(model) < offset:
            model.extend(bytes(offset - len(model)))
        model[offset : offset + len(data)] = data
    elif kind == "truncate":
        del model[offset:]
        model.extend(bytes(offset - len(model)))


@settings(max_examples=150, deadline=None)
@given(operations=_OPERATIONS, crash_after=st.integers(0, 12))
def test_a_crash_leaves_the_last_commit(
    tmp_path_factory: pytest.TempPathFactory,
    operations: list[tuple[str, int, bytes]],
    crash_after: int,
) -> None:
    """Random writes; the process dies during the last flush after ``crash_after`` syscalls."""
    path = tmp_path_factory.mktemp("crash") / "f.bin"
    path.write_bytes(b"committed initial content")
    model = bytearray(path.read_bytes())
    committed = bytes(model)
    file = JournaledFile(path, "r+")
    for operation in operations:
        kind, offset, data = operation
        _apply_to_model(model, operation)
        if kind == "write":
            file.seek(offset)
            file.write(data)
        elif kind == "truncate":
            file.truncate(offset)
        else:
            file.flush()
            committed = bytes(model)
        file.seek(0)
        assert file.read(len(model))[: len(model)] == bytes(model)  # reads see pending writes

    calls = 0

    def dying(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls > crash_after:
                raise SystemExit("killed")
            return real(*args)

        return call

    died = False
    with mock.patch.multiple(os, pwrite=dying(os.pwrite), ftruncate=dying(os.ftruncate)):
        try:
            file.flush()
        except SystemExit:
            died = True
    os.close(file._fd)  # pyright: ignore[reportPrivateUsage]  # gone without closing
    with JournaledFile(path, "r+") as reopened:
        content = reopened.read()
    if died and content != bytes(model):  # killed before the journal was complete
        # The last commit, whole; past its end may lie bytes of the lost flush, which nothing
        # committed refers to (HDF5 ignores what lies past its end-of-allocation address).
        assert content[: len(committed)] == committed
    else:  # the flush returned, or its journal was complete and was replayed
        assert content == bytes(model)


def test_files_left_open_are_closed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "left-open.h5"
    script = (
        "import sys; from corelay.io.journal import open_journaled\n"
        "file = open_journaled(sys.argv[1], 'w')\n"
        "file.create_group('group')\n"  # not flushed: committed when the file is closed at exit
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, str(path)], env=env, check=False)
    assert done.returncode == 0
    assert not journal_path(path).exists()
    with open_journaled(path, "r") as file:
        assert list(file) == ["group"]


def test_reader_locks_out_writers_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    open_journaled(path, "w").close()
    reader = open_journaled(path, "r")
    with pytest.raises(BlockingIOError, match="another process"):
        JournaledFile(path, "r+")
    with open_journaled(path, "r"):  # readers share
        pass
    reader.close()  # the lock goes with close, not with garbage collection
    with open_journaled(path, "a") as writer:
        writer["x"] = 1
        with pytest.raises(BlockingIOError, match="open for writing"):
            open_journaled(path, "r")
