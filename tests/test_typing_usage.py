"""Strict user code type-checks without casts (mypy and pyright check this file), and runs.

The mistakes below are pinned with ``# type: ignore[code]``: mypy (``warn_unused_ignores``, part
of ``strict``) and pyright (``reportUnnecessaryTypeIgnoreComment``) fail if one of them stops
being an error. Each also fails at run time, with a TypeError or ValueError.
"""

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from pathlib import Path
from typing import Any, assert_type

import h5py
import numpy as np
import numpy.typing as npt
import pytest

from corelay.io.storage import (
    HashedHDF5,
    HDF5Storage,
    Mode,
    NoDataSource,
    NoStorage,
    PickleStorage,
    StorageParams,
)


def test_strict_user_code(tmp_path: Path) -> None:
    features: dict[str, npt.NDArray[np.float64]] = {"a": np.zeros(3)}
    batches: list[npt.NDArray[np.int32]] = [np.arange(2, dtype=np.int32)]
    with HDF5Storage(tmp_path / "f.h5", "w") as storage:
        assert_type(storage, HDF5Storage)
        storage["features"] = features
        storage["batches"] = batches
        storage["mixed"] = (features, batches, "label", 1.0, None)
        view = storage.at(data_key="features")
        assert_type(view, HDF5Storage)
        assert_type(storage.keys(), KeysView[str])
        read: npt.NDArray[np.float64] = view.read()["a"]
        assert read.shape == (3,)
    with NoStorage() as nothing:
        assert_type(nothing, NoStorage)


def test_mapping_basics_are_typed(tmp_path: Path) -> None:
    with PickleStorage(tmp_path / "f.pkl", "w") as storage:
        storage["a"] = 1
        assert_type(len(storage), int)
        assert_type(iter(storage), Iterator[str])
        assert_type(storage.items(), ItemsView[str, Any])
        assert_type(storage.values(), ValuesView[Any])
        assert_type("a" in storage, bool)
        assert_type(storage.mode, Mode)
        keys: list[str] = [key for key in storage]
        assert keys == ["a"]
        assert storage.get("b", 0) == 0
        del storage["a"]
        params: StorageParams = {"data_key": "b"}
        assert storage.at(**params).data_key == "b"


def test_mistakes_fail_in_the_type_checkers_and_at_run_time(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with pytest.raises(ValueError, match="invalid mode 'rw'"):
        HDF5Storage(path, mode="rw")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="datakey"):
        PickleStorage(tmp_path / "f.pkl", "a", datakey="x")  # type: ignore[call-arg]
    with HDF5Storage(path, "w") as storage:
        with pytest.raises(TypeError, match="has no parameter 'dat_key'"):
            storage.at(dat_key="x")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="data_key must be str, not int"):
            storage.at(data_key=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"HDF5Storage\.at\(\) takes 1 positional"):
            storage.at("x")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"HDF5Storage\.__getitem__\(\)"):
            storage[0]  # type: ignore[index]
        with pytest.raises(TypeError, match=r"HDF5Storage\.get\(\)"):
            storage.get(b"a")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"NoStorage\.at\(\) got an unexpected keyword"):
            NoStorage().at(data_key="a")  # type: ignore[call-arg]


def test_hashed_cache_management_is_typed(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "c.h5", "w") as file:
        cache = HashedHDF5(file)
        cache.write(np.zeros(2), np.ones(2), {"step": "embed"})
        assert_type(cache.exists(np.ones(2), {"step": "embed"}), bool)
        assert_type(len(cache), int)
        cache.evict(np.ones(2), {"step": "embed"})
        with pytest.raises(NoDataSource):
            cache.evict(np.ones(2), {"step": "embed"})
        assert_type(cache.clear(), None)
