"""The storage backends that the shared test table runs against."""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from corelay.io.storage import DataStorageBase, HDF5Storage, PickleStorage


class Backend(NamedTuple):
    """How to open a keyed storage of one kind on a file."""

    name: str
    suffix: str
    open: Callable[[Path, str], DataStorageBase]


def _open_hdf5(path: Path, mode: str) -> DataStorageBase:
    return HDF5Storage(path, mode)


def _open_pickle(path: Path, mode: str) -> DataStorageBase:
    return PickleStorage(path, mode)


BACKENDS: list[Backend] = [
    Backend("hdf5", ".h5", _open_hdf5),
    Backend("pickle", ".pkl", _open_pickle),
]
