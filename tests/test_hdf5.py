"""HDF5Storage specifics: the file layout, files written by other tools, atomic replacement."""

from collections import OrderedDict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from corelay.io import _hdf5
from corelay.io._hdf5 import write as hdf5_write
from corelay.io._keys import TEMP_PREFIX
from corelay.io.storage import HDF5Storage, NoDataSource, StringInfo
from tests.cases import assert_same_tree


def test_layout_is_plain_groups_and_datasets(tmp_path: Path) -> None:
    path = tmp_path / "layout.h5"
    with HDF5Storage(path, "w") as storage:
        storage["result"] = {"b": np.arange(3), "a": (np.ones(2), "text"), "c": ["x"]}
    with h5py.File(path, "r") as file:
        group = file["result"]
        assert isinstance(group, h5py.Group)
        assert list(group) == ["b", "a", "c"]  # dict order kept by creation-order tracking
        assert group.attrs[_hdf5.KIND_ATTR] == "dict"
        tuple_group = group["a"]
        assert isinstance(tuple_group, h5py.Group)
        assert tuple_group.attrs[_hdf5.KIND_ATTR] == "tuple"
        assert sorted(tuple_group) == ["0", "1"]
        array = group["b"]
        assert isinstance(array, h5py.Dataset)
        np.testing.assert_array_equal(array[()], np.arange(3))
        text = tuple_group["1"]
        assert isinstance(text, h5py.Dataset)
        assert text.asstr()[()] == "text"


def test_unicode_arrays_are_utf8_strings(tmp_path: Path) -> None:
    path = tmp_path / "strings.h5"
    with HDF5Storage(path, "w") as storage:
        storage["labels"] = np.array(["cat", "größe"])
        storage["raw"] = np.array([b"ab", b"c"])
    with h5py.File(path, "r") as file:
        labels = file["labels"]
        raw = file["raw"]
        assert isinstance(labels, h5py.Dataset) and isinstance(raw, h5py.Dataset)
        assert _hdf5.string_info(labels) == StringInfo("utf-8", len("größe".encode()))
        assert labels.asstr()[()].tolist() == ["cat", "größe"]
        assert _hdf5.string_info(raw) == StringInfo("ascii", 2)


def _write_foreign_file(path: Path) -> None:
    with h5py.File(path, "w") as file:
        group = file.create_group("tuple_like")
        for index in (0, 1, 10, 2):
            group.create_dataset(str(index), data=np.full(2, index))
        file.create_dataset("scalar", data=np.float32(1.5))
        file.create_dataset("text", data="hello", dtype=h5py.string_dtype())
        file.create_dataset("texts", data=["a", "bé"], dtype=h5py.string_dtype())
        file.create_dataset("empty", data=h5py.Empty("f4"))
        nested = file.create_group("nested")
        nested.create_dataset("array", data=np.eye(2))


def test_foreign_file_reads_as_plain_tree(tmp_path: Path) -> None:
    path = tmp_path / "foreign.h5"
    _write_foreign_file(path)
    with HDF5Storage(path, "r") as storage:
        assert sorted(storage.keys()) == [
            "empty",
            "nested",
            "scalar",
            "text",
            "texts",
            "tuple_like",
        ]
        # Member names made of digits become ints, in h5py's (name) order.
        expected = OrderedDict((index, np.full(2, index)) for index in (0, 1, 10, 2))
        assert_same_tree(storage["tuple_like"], expected)
        scalar = storage["scalar"]
        assert type(scalar) is np.float32 and scalar == np.float32(1.5)
        assert storage["text"] == "hello"
        assert_same_tree(storage["texts"], np.array(["a", "bé"]))
        assert storage["empty"] is None
        assert_same_tree(storage["nested"], {"array": np.eye(2)})


def test_write_into_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.h5"
    _write_foreign_file(path)
    with HDF5Storage(path, "a") as storage:
        storage["nested/added"] = (1, 2)
        assert storage["nested/added"] == (1, 2)
        np.testing.assert_array_equal(storage["nested/array"], np.eye(2))


def test_key_below_a_dataset_is_value_error(tmp_path: Path) -> None:
    with HDF5Storage(tmp_path / "f.h5", "w") as storage:
        storage["leaf"] = np.zeros(2)
        with pytest.raises(ValueError, match="'leaf' is a dataset"):
            storage["leaf/below"] = 1
        assert_same_tree(storage["leaf"], np.zeros(2))


def test_failed_write_keeps_old_value_and_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.h5"
    real_write_node = hdf5_write.write_node
    calls = 0

    def failing_write_node(
        parent: h5py.Group, name: str, value: Any, node: Any, compression: Any = None
    ) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # fail in the middle of the tree, after some members were written
            raise OSError("disk full")
        real_write_node(parent, name, value, node)

    with HDF5Storage(path, "w") as storage:
        storage["key"] = {"old": 1}
        monkeypatch.setattr(hdf5_write, "write_node", failing_write_node)
        with pytest.raises(OSError, match="disk full"):
            storage["key"] = {"a": 1, "b": 2, "c": 3}
        monkeypatch.undo()
        assert_same_tree(storage["key"], {"old": 1})
    with h5py.File(path, "r") as file:
        assert list(file) == ["key"]


def test_leftover_temporary_entry_is_invisible_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as file:  # as an exception whose cleanup failed can leave it
        file.create_group(TEMP_PREFIX + "key").create_dataset("0", data=[1])
    with HDF5Storage(path, "a") as storage:
        assert list(storage.keys()) == []
        assert "key" not in storage
        with pytest.raises(NoDataSource):
            storage["key"]
        storage["key"] = (np.arange(2),)
        storage["key"] = (np.arange(3),)  # the replacement is written where the leftover was
        assert_same_tree(storage["key"], (np.arange(3),))
    with h5py.File(path, "r") as file:
        assert list(file) == ["key"]


def test_incomplete_recorded_entry_is_no_data_source(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with HDF5Storage(path, "w") as storage:
        storage["key"] = (1, 2, 3)
    with h5py.File(path, "a") as file:
        del file["key/1"]
    with HDF5Storage(path, "r") as storage, pytest.raises(NoDataSource, match="incomplete"):
        storage["key"]


def test_reserved_prefix_is_not_a_name(tmp_path: Path) -> None:
    with HDF5Storage(tmp_path / "f.h5", "w") as storage:
        with pytest.raises(ValueError, match="reserved prefix"):
            storage[TEMP_PREFIX + "x"] = 1
        with pytest.raises(ValueError, match="reserved prefix"):
            storage["key"] = {TEMP_PREFIX + "x": 1}


def test_io_is_the_open_file(tmp_path: Path) -> None:
    with HDF5Storage(tmp_path / "f.h5", "w", data_key="k") as storage:
        assert isinstance(storage.io, h5py.File)
        storage.write(np.arange(2))
        assert "k" in storage.io
