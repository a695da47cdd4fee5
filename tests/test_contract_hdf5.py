"""HDF5Storage passes the backend contract of corelay.io.testing."""

from pathlib import Path

from corelay.io.storage import DataStorageBase, HDF5Storage, Mode
from corelay.io.testing import StorageTests


class TestHDF5Storage(StorageTests):
    suffix = ".h5"

    def open(self, path: Path, mode: Mode) -> DataStorageBase:
        return HDF5Storage(path, mode)
