"""Journaled HDF5 files: every flush is committed whole or not at all."""

import errno
import io
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
from corelay.io._journal_record import parse_journal
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


def test_second_writer_in_this_process_is_refused_as_such(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with open_journaled(path, "w"):
        with pytest.raises(BlockingIOError, match="open for writing in this process"):
            JournaledFile(path, "r+")
        with pytest.raises(BlockingIOError, match="in this process"):
            JournaledFile(path, "r")


def _bound(path: Path, operations: list[journal.Operation]) -> bytes:
    status = path.stat()
    return journal.encode_journal(operations, status.st_ino, status.st_size)


def _write_journal(path: Path, operations: list[journal.Operation]) -> bytes:
    encoded = _bound(path, operations)
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
    path.write_bytes(b"old content")
    encoded = _bound(path, [(0, b"new")])
    for cut in range(len(encoded)):  # a writer killed while writing the journal
        path.write_bytes(b"old content")
        journal_path(path).write_bytes(encoded[:cut])
        JournaledFile(path, "r+").close()
        assert path.read_bytes() == b"old content", cut
        assert not journal_path(path).exists()


def test_corrupt_journal_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old content")
    encoded = bytearray(_bound(path, [(0, b"new")]))
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


def _model_file(
    path: Path, operations: list[tuple[str, int, bytes]], keep_tail: bool = False
) -> tuple[JournaledFile, bytearray, bytes]:
    """Opens ``path`` and applies ``operations``; returns the file, the model, the last commit."""
    path.write_bytes(b"committed initial content")
    model = bytearray(path.read_bytes())
    committed = bytes(model)
    file = JournaledFile(path, "r+", keep_tail=keep_tail)
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
        assert file.seek(0, os.SEEK_END) == len(model)
    return file, model, committed


def _failing_after(count: int, error: BaseException) -> dict[str, Any]:
    """Replacements of os.pwrite, os.pwritev and os.ftruncate: the calls after ``count`` raise
    ``error``."""
    calls = 0

    def failing(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls > count:
                raise error
            return real(*args)

        return call

    return {
        "pwrite": failing(os.pwrite),
        "pwritev": failing(os.pwritev),
        "ftruncate": failing(os.ftruncate),
    }


def _vanish(file: JournaledFile) -> None:
    """What a killed process leaves: descriptors closed by the system, nothing else done."""
    os.close(file._fd)  # pyright: ignore[reportPrivateUsage]
    if file._journal_fd is not None:  # pyright: ignore[reportPrivateUsage]
        os.close(file._journal_fd)  # pyright: ignore[reportPrivateUsage]
    file._lock.release()  # pyright: ignore[reportPrivateUsage]
    file.discard()
    io.RawIOBase.close(file)  # marked closed, so that garbage collection closes nothing


def _assert_last_or_new(content: bytes, committed: bytes, model: bytearray) -> None:
    if content != bytes(model):  # failed before the journal was complete
        # The last commit, whole; past its end may lie bytes of the lost flush, which nothing
        # committed refers to (HDF5 ignores what lies past its end-of-allocation address).
        assert content[: len(committed)] == committed


@settings(max_examples=150, deadline=None)
@given(operations=_OPERATIONS, crash_after=st.integers(0, 12))
def test_a_crash_leaves_the_last_commit(
    tmp_path_factory: pytest.TempPathFactory,
    operations: list[tuple[str, int, bytes]],
    crash_after: int,
) -> None:
    """Random writes; the process dies during the last flush after ``crash_after`` syscalls."""
    path = tmp_path_factory.mktemp("crash") / "f.bin"
    file, model, committed = _model_file(path, operations)
    died = False
    with mock.patch.multiple(os, **_failing_after(crash_after, SystemExit("killed"))):
        try:
            file.flush()
        except SystemExit:
            died = True
    _vanish(file)
    with JournaledFile(path, "r+") as reopened:
        content = reopened.read()
    if died:
        _assert_last_or_new(content, committed, model)
    else:
        assert content == bytes(model)


def test_a_journal_written_in_short_pieces_is_complete(tmp_path: Path) -> None:
    """More operations than one gathering write takes, each write cut short by the system:
    the journal on disk is still whole, and a crash right after it replays every operation."""
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(6000))
    model = bytearray(6000)
    calls: list[int] = []

    def short(fd: int, buffers: list[Any], offset: int) -> int:
        calls.append(len(buffers))  # writes no more than 11 bytes, as a system may
        return os.pwrite(fd, b"".join(bytes(buffer) for buffer in buffers)[:11], offset)

    file = JournaledFile(path, "r+")
    for index in range(1500):  # overwrites of committed bytes: 3000 pieces in the journal
        data = bytes([index % 251 + 1]) * 3
        file.seek(index * 4)
        file.write(data)
        model[index * 4 : index * 4 + 3] = data
    with (
        mock.patch.object(os, "pwritev", short),
        mock.patch.object(JournaledFile, "_apply", side_effect=SystemExit("killed")),
        pytest.raises(SystemExit),
    ):
        file.flush()
    _vanish(file)
    assert max(calls) <= 1024  # within the system's limit of buffers per write
    assert path.read_bytes() == bytes(6000)  # killed before anything reached the file
    with JournaledFile(path, "r+") as reopened:
        assert reopened.read() == bytes(model)
    assert not journal_path(path).exists()


@settings(max_examples=150, deadline=None)
@given(
    operations=_OPERATIONS,
    fail_after=st.integers(0, 12),
    errno_code=st.sampled_from([errno.ENOSPC, errno.EDQUOT, errno.EFBIG]),
    more=st.binary(min_size=1, max_size=30),
)
def test_a_full_disk_leaves_the_last_commit_and_a_usable_file(
    tmp_path_factory: pytest.TempPathFactory,
    operations: list[tuple[str, int, bytes]],
    fail_after: int,
    errno_code: int,
    more: bytes,
) -> None:
    """The disk fills up at any write of a flush: after a rollback the file holds the last
    commit (or the new one, if its journal was complete), takes writes again, and keeps them."""
    path = tmp_path_factory.mktemp("full") / "f.bin"
    file, model, committed = _model_file(path, operations)
    failed = False
    error = OSError(errno_code, os.strerror(errno_code))
    with mock.patch.multiple(os, **_failing_after(fail_after, error)):
        try:
            file.flush()
        except OSError as raised:
            assert raised.errno == errno_code
            failed = True
    if failed:
        file.discard()
        file.restore()
        file.seek(0)
        content = file.read()
        _assert_last_or_new(content, committed, model)
        if content != bytes(model):
            assert content == committed  # the failed write's bytes are given back
        model = bytearray(content)
    file.seek(len(model))
    file.write(more)
    file.close()
    assert not journal_path(path).exists()
    assert path.read_bytes() == bytes(model) + more


@settings(max_examples=100, deadline=None)
@given(
    operations=st.lists(
        st.tuples(st.integers(0, 2**64 - 2), st.one_of(st.none(), st.binary(max_size=8))),
        max_size=6,
    ),
    inode_delta=st.integers(-3, 3),
    size=st.integers(0, 2**64 - 1),
)
def test_a_foreign_or_crafted_journal_is_ignored(
    tmp_path_factory: pytest.TempPathFactory,
    operations: list[journal.Operation],
    inode_delta: int,
    size: int,
) -> None:
    """A complete journal that is not bound to the file is never replayed, and never raises."""
    path = tmp_path_factory.mktemp("foreign") / "f.bin"
    path.write_bytes(b"committed content")
    status = path.stat()
    inode = max(status.st_ino + inode_delta, 0)
    encoded = journal.encode_journal(operations, inode, size)
    journal_path(path).write_bytes(encoded)
    parsed = parse_journal(encoded)
    bound = bool(parsed) and parsed is not False and parsed.binds(status)  # type: ignore[union-attr]
    if bound:
        return  # a journal of this very file: replayed, as tested above
    warns = pytest.warns(RuntimeWarning, match="does not belong to its file")
    with warns, JournaledFile(path, "r") as reader:
        assert reader.read() == b"committed content"
    with pytest.warns(RuntimeWarning, match="does not belong to its file"):
        JournaledFile(path, "r+").close()
    assert path.read_bytes() == b"committed content"
    assert not journal_path(path).exists()


def test_a_journal_copied_from_another_file_is_ignored(tmp_path: Path) -> None:
    source, target = tmp_path / "source.h5", tmp_path / "target.h5"
    for path in (source, target):
        with open_journaled(path, "w") as file:
            file["x"] = np.arange(3)
    encoded = _bound(source, [(0, b"\xff" * 64)])
    journal_path(target).write_bytes(encoded)  # complete and valid, for the other file
    with pytest.warns(RuntimeWarning, match="does not belong"), open_journaled(target, "a") as f:
        np.testing.assert_array_equal(np.asarray(f["x"]), np.arange(3))
    assert not journal_path(target).exists()


@pytest.mark.parametrize("dangling", [True, False])
def test_a_symlinked_journal_is_refused_and_its_target_untouched(
    tmp_path: Path, dangling: bool
) -> None:
    path, target = tmp_path / "f.h5", tmp_path / "precious.txt"
    with open_journaled(path, "w") as file:
        file["x"] = 1
    if not dangling:
        target.write_bytes(b"precious")
    journal_path(path).symlink_to(target)
    for mode in ("r", "a", "w"):
        with pytest.raises(OSError, match="not a regular journal"):
            open_journaled(path, mode)
    assert journal_path(path).is_symlink()
    assert target.exists() != dangling and (dangling or target.read_bytes() == b"precious")
    with pytest.raises(OSError, match="not a regular journal"):
        JournaledFile(path, "r+")


def test_a_journal_link_planted_while_open_is_never_written_through(tmp_path: Path) -> None:
    path, target = tmp_path / "f.bin", tmp_path / "precious.txt"
    path.write_bytes(b"0123456789")
    target.write_bytes(b"precious")
    file = JournaledFile(path, "r+")
    file.write(b"ab")
    file.flush()  # the journal now exists, and is spent
    journal_path(path).unlink()
    journal_path(path).symlink_to(target)
    file.seek(0)
    file.write(b"cd")
    with pytest.raises(OSError, match="appeared while the file was open"):
        file.flush()
    file.discard()
    with pytest.raises(OSError, match="not a regular journal"):  # the link stays refused
        file.restore()
    file.close()  # and stays in place
    assert target.read_bytes() == b"precious"
    assert journal_path(path).is_symlink()
    assert path.read_bytes() == b"ab23456789"


@settings(max_examples=30, deadline=None)
@given(operations=_OPERATIONS, kind=st.sampled_from(["symlink", "fifo", "directory"]))
def test_a_journal_that_is_not_a_regular_file_is_refused(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[str, int, bytes]], kind: str
) -> None:
    directory = tmp_path_factory.mktemp("odd")
    path = directory / "f.bin"
    file, model, _ = _model_file(path, operations)
    file.close()
    slot = journal_path(path)
    if kind == "symlink":
        slot.symlink_to(path)  # would replay onto the file itself
    elif kind == "fifo":
        os.mkfifo(slot)
    else:
        slot.mkdir()
    for mode in ("r", "r+", "w"):
        with pytest.raises(OSError, match="not a regular journal"):
            JournaledFile(path, mode)
    assert path.read_bytes() == bytes(model)


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
    with pytest.raises(BlockingIOError, match="open for reading in this process"):
        JournaledFile(path, "r+")
    with open_journaled(path, "r"):  # readers share
        pass
    reader.close()  # the lock goes with close, not with garbage collection
    with open_journaled(path, "a") as writer:
        writer["x"] = 1
        with pytest.raises(BlockingIOError, match="open for writing"):
            open_journaled(path, "r")


@settings(max_examples=60, deadline=None)
@given(operations=_OPERATIONS)
def test_a_kept_tail_reads_as_the_file_would_without_it(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[str, int, bytes]]
) -> None:
    """With ``keep_tail``, a flush that ends by truncating leaves the bytes, reading as zeros."""
    path = tmp_path_factory.mktemp("tail") / "f.bin"
    file, model, _ = _model_file(path, operations, keep_tail=True)
    file.close()
    assert path.read_bytes() == bytes(model)  # closing drops the kept tail
