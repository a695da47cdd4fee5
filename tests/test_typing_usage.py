"""Strict user code type-checks without casts (mypy and pyright check this file), and runs."""

from collections.abc import KeysView
from pathlib import Path
from typing import assert_type

import numpy as np
import numpy.typing as npt

from corelay.io.storage import HDF5Storage, NoStorage


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
