"""PickleStorage.lazy: big arrays memory-mapped read-only from the file, others loaded."""

import gc
import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corelay.io.storage import NoDataSource, PickleStorage


def _tree() -> dict[str, Any]:
    return {
        "big": np.arange(1 << 20, dtype=np.float64),  # 8 MiB
        "fortran": np.asfortranarray(np.arange(40000.0).reshape(200, 200)),
        "strided": np.arange(1 << 18, dtype=np.int32)[::2],
        "small": np.arange(5),
        "n": 1,
        "label": "x",
    }


def test_big_arrays_are_mapped_read_only(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    tree = _tree()
    with PickleStorage(path, "w") as storage:
        storage["k"] = tree
        storage["k"] = tree  # the last record counts
    with PickleStorage(path, "r", "k") as storage:
        tracemalloc.start()
        try:
            lazy = storage.lazy()
            used = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert used < 1 << 20  # nothing of the 8 MiB array was read into memory
        for name in ("big", "fortran", "strided"):
            np.testing.assert_array_equal(lazy[name], tree[name])
            assert lazy[name].dtype == tree[name].dtype
            assert not lazy[name].flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                lazy[name][0] = 0
        assert lazy["fortran"].flags.f_contiguous
        assert lazy["small"].flags.writeable  # small arrays are loaded
        assert (lazy["n"], lazy["label"]) == (1, "x")
        read = storage.read()
        assert read["big"].flags.writeable  # read() still returns writable arrays


def test_a_mapped_array_outlives_its_storage_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "o.pkl"
    with PickleStorage(path, "w") as storage:
        storage["k"] = np.arange(1 << 20, dtype=np.float64)
    with PickleStorage(path, "a") as storage:
        array = storage.lazy("k")
    with pytest.raises(BlockingIOError):
        PickleStorage(path, "w")  # would empty the file under the array
    assert float(array[-1]) == (1 << 20) - 1
    with PickleStorage(path, "a") as storage:  # appending and reading go on meanwhile
        storage["j"] = 2
    del array
    gc.collect()
    PickleStorage(path, "w").close()


def test_records_of_older_protocols_load_as_read_loads_them(tmp_path: Path) -> None:
    path = tmp_path / "old.pkl"
    value = np.arange(1 << 17, dtype=np.float64)
    with path.open("wb") as file:
        pickle.dump({"data": value, "key": "k"}, file, protocol=2)
    with PickleStorage(path, "r") as storage:
        loaded = storage.lazy("k")
        np.testing.assert_array_equal(loaded, value)
        assert loaded.flags.writeable


def test_a_w_storage_loads_eagerly(tmp_path: Path) -> None:
    with PickleStorage(tmp_path / "w.pkl", "w") as storage:
        storage["k"] = np.arange(1 << 20, dtype=np.float64)
        assert storage.lazy("k").flags.writeable


def test_lazy_of_a_missing_key_and_after_close(tmp_path: Path) -> None:
    path = tmp_path / "e.pkl"
    with PickleStorage(path, "w") as storage:
        storage["k"] = 1
        with pytest.raises(NoDataSource, match="nope"):
            storage.lazy("nope")
        with pytest.raises(TypeError, match="data_key"):
            storage.lazy()
    with pytest.raises(ValueError, match="closed"):
        storage.lazy("k")
