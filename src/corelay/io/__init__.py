"""Storage of pipeline results: the public names of :mod:`corelay.io.storage`."""

from corelay.io.errors import CacheWarning
from corelay.io.storage import (
    DataStorageBase,
    HashedHDF5,
    HDF5Storage,
    NoDataSource,
    NoDataTarget,
    NoStorage,
    PickleStorage,
    Storable,
)

__all__ = [
    "CacheWarning",
    "DataStorageBase",
    "HDF5Storage",
    "HashedHDF5",
    "NoDataSource",
    "NoDataTarget",
    "NoStorage",
    "PickleStorage",
    "Storable",
]
