"""PickleStorage passes the backend contract of corelay.io.testing."""

from pathlib import Path

from corelay.io.storage import DataStorageBase, Mode, PickleStorage
from corelay.io.testing import StorageTests


class TestPickleStorage(StorageTests):
    suffix = ".pkl"

    def open(self, path: Path, mode: Mode) -> DataStorageBase:
        return PickleStorage(path, mode)
