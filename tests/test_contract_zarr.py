"""ZarrStorage passes the backend contract of corelay.io.testing, on a directory and on S3."""

from pathlib import Path

import pytest

from corelay.io.storage import DataStorageBase, Mode, ZarrStorage
from corelay.io.testing import StorageTests
from tests.seaweed import S3Server, prefix_of


class TestZarrStorageDirectory(StorageTests):
    suffix = ".zarr"

    def open(self, path: Path, mode: Mode) -> DataStorageBase:
        return ZarrStorage(path, mode)


class TestZarrStorageS3(StorageTests):
    """Each test's path names its own prefix in the bucket of the test S3 server."""

    suffix = ".zarr"
    server: S3Server

    @pytest.fixture(autouse=True)
    def _server(self, s3_server: S3Server) -> None:
        self.server = s3_server

    def open(self, path: Path, mode: Mode) -> DataStorageBase:
        return ZarrStorage(self.server.store(prefix_of(path)), mode)
