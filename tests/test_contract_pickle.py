"""PickleStorage passes the backend contract of corelay.io.testing."""

from pathlib import Path

from corelay.io.storage import DataStorageBase, PickleStorage
from corelay.io.testing import StorageTests


class TestPickleStorage(StorageTests):
    suffix = ".pkl"

    def open(self, path: Path, mode: str) -> DataStorageBase:
        return PickleStorage(path, mode)
