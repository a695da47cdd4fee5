"""The storage backends that the shared test table runs against."""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from corelay.io.storage import DataStorageBase, HDF5Storage, Mode, PickleStorage


class Backend(NamedTuple):
    """How to open a keyed storage of one kind on a file."""

    name: str
    suffix: str
    open: Callable[[Path, Mode], DataStorageBase]
    plain_read: str
    """A script that reads ``key`` of the file ``sys.argv[1]`` without this library, and prints
    its item 4: what another program sees while the storage is still open."""


def _open_hdf5(path: Path, mode: Mode) -> DataStorageBase:
    return HDF5Storage(path, mode)


def _open_pickle(path: Path, mode: Mode) -> DataStorageBase:
    return PickleStorage(path, mode)


BACKENDS: list[Backend] = [
    Backend(
        "hdf5",
        ".h5",
        _open_hdf5,
        "import h5py, sys; print(h5py.File(sys.argv[1], 'r', locking=False)['key'][4])",
    ),
    Backend(
        "pickle",
        ".pkl",
        _open_pickle,
        "import pickle, sys; print(pickle.load(open(sys.argv[1], 'rb'))['data'][4])",
    ),
]
