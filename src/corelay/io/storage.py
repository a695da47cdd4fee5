"""Read and write the intermediate results of analysis pipelines in HDF5, pickle and Zarr stores.

Every class of the reference API is imported from here. Each format owns its module:
:class:`HDF5Storage` and :class:`HashedHDF5` are built on the HDF5 format, :class:`PickleStorage`
on the pickle format, :class:`ZarrStorage` and :class:`HashedZarr` on the Zarr format (which
needs the ``zarr`` extra); :class:`DataStorageBase` is the base class of them all.
"""

from corelay.io._base import DataStorageBase, Mode, NoStorage, Storable, StorageParams
from corelay.io._hashed import HashedHDF5
from corelay.io._hashed_zarr import HashedZarr
from corelay.io._hdf5.storage import HDF5Storage
from corelay.io._pickle.storage import PickleStorage
from corelay.io._zarr.storage import ZarrStorage
from corelay.io.errors import NoDataSource, NoDataTarget, UnreadableNodeError
from corelay.io.lazy import LazyArray
from corelay.io.tree import RecursiveHashTuple, RecursiveNumPyArrayTuple, StringInfo, TreeInput

__all__ = [
    "DataStorageBase",
    "HDF5Storage",
    "HashedHDF5",
    "HashedZarr",
    "LazyArray",
    "Mode",
    "NoDataSource",
    "NoDataTarget",
    "NoStorage",
    "PickleStorage",
    "RecursiveHashTuple",
    "RecursiveNumPyArrayTuple",
    "Storable",
    "StorageParams",
    "StringInfo",
    "TreeInput",
    "UnreadableNodeError",
    "ZarrStorage",
]
