"""The mapping basics of the storages: len, iteration, get, items, values, del, repr."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from corelay.io import _pickle
from corelay.io.storage import (
    HDF5Storage,
    NoDataSource,
    NoDataTarget,
    NoStorage,
    PickleStorage,
)
from tests.backends import Backend
from tests.cases import assert_same_tree
from tests.upstream import run_upstream


def _fill(backend: Backend, path: Path) -> None:
    with backend.open(path, "w") as storage:
        storage["b"] = np.arange(3)
        storage["a"] = {"x": 1, "y": "text"}
        storage["c"] = None


def _in_file_order(backend: Backend, keys: list[str]) -> list[str]:
    # HDF5 and Zarr list by name; pickle in the order of the keys' first records.
    return sorted(keys) if backend.name in ("hdf5", "zarr") else keys


def _contents(path: Path) -> dict[str, bytes]:
    # A file's bytes; every file's of a store that is a directory (Zarr).
    if not path.is_dir():
        return {"": path.read_bytes()}
    return {
        str(item.relative_to(path)): item.read_bytes() for item in path.rglob("*") if item.is_file()
    }


def test_len_and_iteration_follow_the_file_order(backend: Backend, store_path: Path) -> None:
    _fill(backend, store_path)
    with backend.open(store_path, "r") as storage:
        assert len(storage) == 3
        assert list(storage) == _in_file_order(backend, ["b", "a", "c"])
        assert list(storage) == list(storage.keys())
        assert "a" in storage
        assert "z" not in storage


def test_get_items_values(backend: Backend, store_path: Path) -> None:
    _fill(backend, store_path)
    with backend.open(store_path, "r") as storage:
        assert storage.get("z") is None
        sentinel = object()
        assert storage.get("z", sentinel) is sentinel
        assert_same_tree(storage.get("b"), np.arange(3))
        items = storage.items()
        assert len(items) == 3
        pairs = list(items)
        assert [key for key, _ in pairs] == _in_file_order(backend, ["b", "a", "c"])
        assert_same_tree(dict(pairs)["a"], storage["a"])
        assert ("c", None) in items
        assert ("z", None) not in items
        assert sum(value is None for value in storage.values()) == 1
        with pytest.raises(ValueError, match="invalid"):
            storage.get("a//b")
        five: object = 5
        with pytest.raises(TypeError, match=rf"{type(storage).__name__}\.get\(\)"):
            storage.get(five)  # type: ignore[arg-type]  # the mistake under test


def test_iteration_lists_the_keys_when_it_began(backend: Backend, store_path: Path) -> None:
    _fill(backend, store_path)
    with backend.open(store_path, "a") as storage:
        seen: list[str] = []
        for key in storage:
            seen.append(key)
            del storage[key]
        assert seen == _in_file_order(backend, ["b", "a", "c"])
        assert len(storage) == 0


def test_del_is_durable(backend: Backend, store_path: Path) -> None:
    _fill(backend, store_path)
    with backend.open(store_path, "a") as storage:
        del storage["a"]
        assert "a" not in storage
        assert storage.get("a") is None
        with pytest.raises(NoDataSource, match="'a'"):
            storage["a"]
        assert list(storage) == _in_file_order(backend, ["b", "c"])
    with backend.open(store_path, "r") as storage:
        assert list(storage) == _in_file_order(backend, ["b", "c"])
        assert_same_tree(storage["b"], np.arange(3))
    with backend.open(store_path, "a") as storage:
        storage["a"] = 7  # written again after its deletion: a new key (last, in pickle)
        assert list(storage) == _in_file_order(backend, ["b", "c", "a"])
    with backend.open(store_path, "r") as storage:
        assert storage["a"] == 7


def test_del_refusals_change_nothing(backend: Backend, store_path: Path) -> None:
    _fill(backend, store_path)
    before = _contents(store_path)
    with backend.open(store_path, "a") as storage:
        with pytest.raises(NoDataSource, match="'z'"):
            del storage["z"]
        with pytest.raises(ValueError, match="invalid"):
            del storage["a/"]
        bad: object = ("a",)
        with pytest.raises(TypeError, match=rf"{type(storage).__name__}\.__delitem__\(\)"):
            del storage[bad]  # type: ignore[arg-type]  # the mistake under test
    assert _contents(store_path) == before
    with backend.open(store_path, "r") as storage:
        with pytest.raises(NoDataTarget, match="read-only"):
            del storage["a"]
        # Read-only is told first, whether the key is there or not.
        with pytest.raises(NoDataTarget):
            del storage["z"]
        assert "a" in storage
    storage.close()
    with pytest.raises(ValueError, match="closed"):
        del storage["a"]
    assert _contents(store_path) == before


def test_del_of_a_nested_key_leaves_the_rest(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["g/x"] = 1
        storage["g/y"] = 2
        del storage["g/x"]
        assert "g/x" not in storage
        assert storage["g/y"] == 2


def test_hdf5_lists_keys_by_name_as_h5py_does(tmp_path: Path) -> None:
    import h5py

    with HDF5Storage(tmp_path / "f.h5", "w") as storage:
        for key in "bac":
            storage[key] = 1
        storage["b"] = 2
        assert list(storage) == ["a", "b", "c"]
    with h5py.File(tmp_path / "f.h5", "r") as file:
        assert list(file) == ["a", "b", "c"]


def test_pickle_replacing_a_key_keeps_its_place(tmp_path: Path) -> None:
    with PickleStorage(tmp_path / "f.pkl", "w") as storage:
        for key in "bac":
            storage[key] = 1
        storage["b"] = 2
        assert list(storage) == ["b", "a", "c"]


def test_hdf5_failed_del_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.h5"
    with HDF5Storage(path, "w") as storage:
        storage["a"] = np.arange(4)
        storage["b"] = 1

        def failing_flush() -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(storage.io, "flush", failing_flush)
        with pytest.raises(OSError, match="No space"):
            del storage["a"]
        monkeypatch.undo()
        assert_same_tree(storage["a"], np.arange(4))  # rolled back, and usable
        storage["c"] = 2
    with HDF5Storage(path, "r") as storage:
        assert list(storage) == ["a", "b", "c"]


def test_pickle_failed_del_leaves_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.pkl"
    with PickleStorage(path, "w") as storage:
        storage["a"] = 1
        before = path.read_bytes()

        def failing_dump(self: object, record: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(_pickle.TreePickler, "dump", failing_dump)
        with pytest.raises(OSError, match="No space"):
            del storage["a"]
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert storage["a"] == 1
    with PickleStorage(path, "r") as storage:
        assert storage["a"] == 1


def test_pickle_torn_tombstone_keeps_the_key(tmp_path: Path) -> None:
    path = tmp_path / "f.pkl"
    with PickleStorage(path, "w") as storage:
        storage["a"] = 1
        size = path.stat().st_size
        del storage["a"]
    path.write_bytes(path.read_bytes()[: size + 5])
    with pytest.warns(RuntimeWarning, match="torn record"), PickleStorage(path, "r") as storage:
        assert storage["a"] == 1


def test_pickle_tombstone_is_a_record_corelay_1_reads(tmp_path: Path) -> None:
    path = tmp_path / "f.pkl"
    with PickleStorage(path, "w") as storage:
        storage["a"] = 1
        storage["b"] = 2
        del storage["a"]
    script = (
        "import json, sys\n"
        "from corelay.io.storage import PickleStorage\n"
        "storage = PickleStorage(sys.argv[1], 'r')\n"
        "print(json.dumps({key: storage.at(data_key=key).read() for key in storage.keys()}))\n"
    )
    # corelay 1.0.0 ignores the extra field of the tombstone: a deleted key reads as None.
    assert run_upstream(script, str(path)) == {"a": None, "b": 2}


def test_repr_names_class_path_mode_and_key(backend: Backend, store_path: Path) -> None:
    storage = backend.open(store_path, "w")
    name = type(storage).__name__
    assert repr(storage) == f"<{name} {str(store_path)!r} mode='w' data_key=None>"
    view = storage.at(data_key="a/b")
    assert repr(view) == f"<{name} {str(store_path)!r} mode='w' data_key='a/b'>"
    storage.close()
    assert repr(view).endswith("data_key='a/b' (closed)>")


def test_storages_are_not_registered_as_mappings(backend: Backend, store_path: Path) -> None:
    # A Mapping compares by contents: == would read the whole file, and hash() would fail.
    with backend.open(store_path, "w") as storage:
        as_object: object = storage
        assert not isinstance(as_object, Mapping)
        assert storage == storage
        assert storage != storage.at(data_key="a")
        assert isinstance(hash(storage), int)
        storage["a"] = 1
        assert dict(storage.items()) == {"a": 1}


def test_no_storage_mapping_basics() -> None:
    storage = NoStorage()
    assert storage.get("a") is None
    assert storage.get("a", 3) == 3
    with pytest.raises(NoDataTarget):
        del storage["a"]
    with pytest.raises(NoDataSource):
        len(storage)
    with pytest.raises(NoDataSource):
        list(storage)
    assert repr(storage) == "<NoStorage>"
