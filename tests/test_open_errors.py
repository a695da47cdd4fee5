"""Opening what is not an HDF5 file says so in one line; type errors name the class called."""

import inspect
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from corelay.io.journal import journal_path
from corelay.io.storage import DataStorageBase, HDF5Storage, NoStorage, PickleStorage


def _assert_readable(error: OSError, path: Path, cause: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert repr(str(path)) in message
    assert cause in message
    for hdf5_text in ("Unable to", "synchronously", "signature not found", "sblock", "eof ="):
        assert hdf5_text not in message


def _hdf5_file(path: Path) -> bytes:
    with h5py.File(path, "w") as file:
        file["x"] = np.arange(100_000)
    return path.read_bytes()


@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_file_of_another_format(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(OSError) as error:
        HDF5Storage(path, "r" if mode == "r" else "a")
    _assert_readable(error.value, path, "is not an HDF5 file (no HDF5 signature in its 6 bytes)")
    assert path.read_text() == "hello\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_truncated_file(tmp_path: Path, mode: str) -> None:
    whole = _hdf5_file(tmp_path / "whole.h5")
    path = tmp_path / "cut.h5"
    path.write_bytes(whole[:3000])
    with pytest.raises(OSError) as error:
        HDF5Storage(path, "r" if mode == "r" else "a")
    _assert_readable(error.value, path, "is a truncated HDF5 file: 3000 bytes, where its header")
    assert path.read_bytes() == whole[:3000]
    assert not journal_path(path).exists()


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    path.touch()
    with pytest.raises(OSError) as error:
        HDF5Storage(path, "r")
    _assert_readable(error.value, path, "is empty, not an HDF5 file")
    # Appending to an empty file makes it a new HDF5 file.
    with HDF5Storage(path, "a") as storage:
        storage["a"] = 1
    with HDF5Storage(path, "r") as storage:
        assert storage["a"] == 1


def test_a_damaged_file_with_the_signature(tmp_path: Path) -> None:
    whole = _hdf5_file(tmp_path / "whole.h5")
    path = tmp_path / "damaged.h5"
    path.write_bytes(whole[:8] + b"\xff" * (len(whole) - 8))
    with pytest.raises(OSError) as error:
        HDF5Storage(path, "r")
    _assert_readable(error.value, path, "is a damaged HDF5 file")


@pytest.mark.parametrize("kind", [HDF5Storage, PickleStorage])
@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_directory(tmp_path: Path, kind: type[HDF5Storage | PickleStorage], mode: str) -> None:
    path = tmp_path / "dir"
    path.mkdir()
    with pytest.raises(OSError) as error:
        kind(path, "r" if mode == "r" else "a")
    message = str(error.value)
    assert "\n" not in message
    assert repr(str(path)) in message
    assert "regular file" in message or "Is a directory" in message


@pytest.mark.parametrize("kind", [HDF5Storage, PickleStorage])
@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_fifo(tmp_path: Path, kind: type[HDF5Storage | PickleStorage], mode: str) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    with pytest.raises(OSError) as error:
        kind(path, "r" if mode == "r" else "a")
    assert str(error.value) == f"[Errno 22] {str(path)!r} is not a regular file: refused"


def _public_methods(kind: type) -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(kind, inspect.isfunction)
        if (not name.startswith("_") or name in ("__getitem__", "__setitem__", "__delitem__"))
        and getattr(member, "__module__", "").startswith("corelay.")
        and name not in vars(object)
    ]


@pytest.mark.parametrize("kind", [HDF5Storage, PickleStorage, NoStorage])
def test_every_method_is_named_after_its_public_class(kind: type[DataStorageBase]) -> None:
    methods = _public_methods(kind)
    assert {"read", "write", "exists", "get", "items", "__getitem__", "__delitem__"} <= set(methods)
    for name in methods:
        assert getattr(kind, name).__qualname__ == f"{kind.__name__}.{name}"
    # Checked at run time: beartype wraps what has hints to check.
    assert hasattr(kind.get, "__wrapped__")
    assert hasattr(kind.__getitem__, "__wrapped__")


@pytest.mark.parametrize("kind", [HDF5Storage, PickleStorage])
def test_type_errors_name_the_method_called(
    tmp_path: Path, kind: type[HDF5Storage | PickleStorage]
) -> None:
    with kind(tmp_path / "store", "w") as storage:
        five: object = 5
        name = kind.__name__
        with pytest.raises(TypeError) as error:
            storage[five]  # type: ignore[index]  # the mistake under test
        assert f"{name}.__getitem__()" in str(error.value)
        with pytest.raises(TypeError) as error:
            _ = five in storage  # type: ignore[operator]  # the mistake under test
        assert f"{name}.__contains__()" in str(error.value)
        with pytest.raises(TypeError) as error:
            storage.get(five)  # type: ignore[arg-type]  # the mistake under test
        assert f"{name}.get()" in str(error.value)
        with pytest.raises(TypeError) as error:
            storage.read(1, 2, 3)  # type: ignore[call-arg]  # the mistake under test
        assert f"{name}.read()" in str(error.value)
