"""The storage backends the shared tests run against: add a backend here, in one line."""

from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import h5py
import numpy as np

from corelay.io.storage import (
    DataStorageBase,
    HashedHDF5,
    HDF5Storage,
    Mode,
    PickleStorage,
    ZarrStorage,
)


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


def _open_zarr(path: Path, mode: Mode) -> DataStorageBase:
    return ZarrStorage(path, mode)


# A key's value is the member its group's attribute corelay.value names (see corelay.io._zarr).
ZARR_PLAIN_READ = (
    "import sys, zarr; key = zarr.open_group({store}, mode='r')['key']; "
    "print(key[key.attrs['corelay.value']][4])"
)

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
    Backend("zarr", ".zarr", _open_zarr, ZARR_PLAIN_READ.format(store="sys.argv[1]")),
]


class TreeStore(Protocol):
    """What the table of tree cases needs of a backend: store and read a tree by a string."""

    def __getitem__(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...


class CaseBackend(NamedTuple):
    """How to open a backend of the case table on a file."""

    name: str
    suffix: str
    open: Callable[[Path, Mode], AbstractContextManager[TreeStore]]


def _keyed(backend: Backend) -> CaseBackend:
    return CaseBackend(backend.name, backend.suffix, backend.open)


HASHED_META = {"function": "tests.step", "params": {"k": 3, "eps": np.float32(1e-3)}}
"""The metadata of every entry the case table writes to a hashed cache."""


class _HashedEntries:
    """A hashed cache as a tree store: the key is the input, with :data:`HASHED_META`."""

    def __init__(self, cache: HashedHDF5) -> None:
        self.cache = cache

    def __getitem__(self, key: str) -> Any:
        return self.cache.read(key, HASHED_META)

    def __setitem__(self, key: str, value: Any) -> None:
        self.cache.write(value, key, HASHED_META)


@contextmanager
def _open_hashed_hdf5(path: Path, mode: Mode) -> Generator[TreeStore]:
    with h5py.File(path, mode) as file:
        group = file.require_group("cache") if mode != "r" else file["cache"]
        assert isinstance(group, h5py.Group)
        yield _HashedEntries(HashedHDF5(group))


CASE_BACKENDS: list[CaseBackend] = [
    *(_keyed(backend) for backend in BACKENDS),
    CaseBackend("hashed-hdf5", ".h5", _open_hashed_hdf5),
]
"""Every backend the case table runs against: the keyed storages, and the hashed caches with
each tree as the output of an entry."""

FILE_BACKENDS: list[Backend] = [backend for backend in BACKENDS if backend.name != "zarr"]
"""The backends whose store is one file with one writer (Zarr stores are directories that any
number of writers share)."""
