"""What validation refuses is refused by every storage before a byte is written; what it
accepts (NUL and surrogate text in pickle, the deepest trees) every storage writes and reads."""

import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from corelay.io.storage import HDF5Storage, PickleStorage
from corelay.io.tree import MAX_DEPTH
from tests.backends import Backend
from tests.cases import assert_same_tree


@pytest.mark.parametrize("key", ["kept\x00zz", "a\x00b", "a/\x00", "x\udcff"])
def test_keys_with_nul_or_surrogates_are_value_errors(
    backend: Backend, store_path: Path, key: str
) -> None:
    with backend.open(store_path, "w") as storage:
        storage["kept"] = 1
        storage["a"] = 2
        with pytest.raises(ValueError, match="invalid key"):
            storage[key] = 3
        with pytest.raises(ValueError, match="invalid key"):
            storage[key]
        with pytest.raises(ValueError, match="invalid key"):
            _ = key in storage
        assert storage["kept"] == 1 and storage["a"] == 2
        assert sorted(storage.keys()) == ["a", "kept"]


def test_dict_keys_differing_after_nul_are_refused(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        with pytest.raises(ValueError, match=r"data_out: invalid dict key: name 'a\\x00x'"):
            storage["key"] = {"a\x00x": 1, "a\x00y": 2}
        assert list(storage.keys()) == []


_HDF5_REFUSED: list[tuple[str, Any, str]] = [
    ("str-nul", {"sub": ["ok", "x\x00y"]}, r"data_out\['sub'\]\[1\]: str 'x\\x00y' contains a NUL"),
    ("str-surrogate", {"s": "\ud800"}, r"data_out\['s'\]: str '\\ud800' contains a lone"),
    ("key-surrogate", {"ok": 1, "\udc80": 2}, r"data_out: invalid dict key: .* lone surrogate"),
    ("u-surrogate", (1, np.array(["a", "\ud800"])), r"data_out\[1\]: unicode array holds U\+D800"),
]


@pytest.mark.parametrize(
    ("tree", "message"),
    [(tree, message) for _, tree, message in _HDF5_REFUSED],
    ids=[case for case, _, _ in _HDF5_REFUSED],
)
def test_hdf5_refuses_what_it_cannot_hold_and_leaves_nothing(
    tmp_path: Path, tree: Any, message: str
) -> None:
    path = tmp_path / "f.h5"
    with HDF5Storage(path, "w") as storage:
        storage["old"] = {"kept": 1}
    with h5py.File(path, "r") as file:
        before = _everything(file)
    with HDF5Storage(path, "a") as storage:
        with pytest.raises(ValueError, match=message):
            storage["new/sub/key"] = tree
        with pytest.raises(ValueError, match=message):
            storage["old"] = tree
        assert_same_tree(storage["old"], {"kept": 1})
    with h5py.File(path, "r") as file:
        assert _everything(file) == before  # no 'new', no temporary names


def _everything(file: h5py.File) -> list[str]:
    names: list[str] = []
    file.visit(names.append)
    return names


@pytest.mark.parametrize(
    "tree",
    [("a\x00b", "\ud800", {"k": np.array(["\udfff", "x"])}, np.str_("\ud83d"))],
)
def test_pickle_stores_any_text_exactly(tmp_path: Path, tree: Any) -> None:
    path = tmp_path / "f.pkl"
    with PickleStorage(path, "w") as storage:
        storage["key"] = tree
    with PickleStorage(path, "r") as storage:
        assert_same_tree(storage["key"], tree)


def _nested(depth: int) -> Any:
    tree: Any = np.arange(3)
    for level in range(depth):
        tree = {"d": tree} if level % 3 == 0 else ([tree, 1] if level % 3 == 1 else (tree,))
    return tree


def test_deepest_accepted_tree_round_trips(backend: Backend, store_path: Path) -> None:
    tree = _nested(MAX_DEPTH)
    with backend.open(store_path, "w") as storage:
        storage["deep"] = tree
    with backend.open(store_path, "r") as storage:
        assert_same_tree(storage["deep"], tree)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5000])
def test_deeper_trees_are_value_errors_naming_the_limit(
    backend: Backend, store_path: Path, depth: int
) -> None:
    with backend.open(store_path, "w") as storage:
        with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH}"):
            storage["deep"] = _nested(depth)
        assert "deep" not in storage


def test_self_referencing_tree_is_value_error(backend: Backend, store_path: Path) -> None:
    tree: dict[str, Any] = {"a": np.zeros(2)}
    tree["b"] = (1, [tree])
    with backend.open(store_path, "w") as storage:
        with pytest.raises(ValueError, match=r"data_out\['b'\]\[1\]\[0\]: a dict that contains"):
            storage["loop"] = tree
        assert "loop" not in storage


def test_pickle_record_with_an_unaddressable_key_is_skipped_with_a_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "upstream.pkl"
    with path.open("wb") as file:  # as corelay 1.0.0 writes records, with any key
        pickle.dump({"data": 1, "key": "kept\x00zz"}, file)
        pickle.dump({"data": 2, "key": "kept"}, file)
    with pytest.warns(RuntimeWarning, match=r"ignoring the record of key 'kept\\x00zz'"):
        storage = PickleStorage(path, "r")
    with storage:
        assert list(storage.keys()) == ["kept"]
        assert storage["kept"] == 2
