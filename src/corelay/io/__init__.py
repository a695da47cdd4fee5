"""Storage of pipeline results: the public names of :mod:`corelay.io.storage`.

POSIX only (Linux, and other systems with ``fcntl`` and ``os.pread``): importing it elsewhere
raises :class:`ImportError`.
"""

import os
import sys

# Files are locked with fcntl and read and written at offsets with os.pread and os.pwrite, which
# Windows lacks: say so at import, not at the first file opened.
if os.name != "posix" or sys.platform == "win32":
    raise ImportError(
        f"corelay.io needs a POSIX system (Linux, macOS); this is {sys.platform!r} "
        "(it locks files with fcntl and reads them with os.pread, which Windows lacks)"
    )

from corelay.io.errors import CacheWarning
from corelay.io.storage import (
    DataStorageBase,
    HashedHDF5,
    HashedZarr,
    HDF5Storage,
    LazyArray,
    NoDataSource,
    NoDataTarget,
    NoStorage,
    PickleStorage,
    Storable,
    ZarrStorage,
)

__all__ = [
    "CacheWarning",
    "DataStorageBase",
    "HDF5Storage",
    "HashedHDF5",
    "HashedZarr",
    "LazyArray",
    "NoDataSource",
    "NoDataTarget",
    "NoStorage",
    "PickleStorage",
    "Storable",
    "ZarrStorage",
]
