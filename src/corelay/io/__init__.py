"""Storage of pipeline results: the public names of :mod:`corelay.io.storage`."""

from corelay.io.storage import (
    DataStorageBase,
    HDF5Storage,
    NoDataSource,
    NoDataTarget,
    NoStorage,
    Storable,
)

__all__ = [
    "DataStorageBase",
    "HDF5Storage",
    "NoDataSource",
    "NoDataTarget",
    "NoStorage",
    "Storable",
]
