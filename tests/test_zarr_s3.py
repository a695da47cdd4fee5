"""The table of tree cases, for ZarrStorage on S3 (SeaweedFS); the contract is in
test_contract_zarr."""

from pathlib import Path

import pytest

from corelay.io.storage import DataStorageBase, Mode, ZarrStorage
from tests.backends import ZARR_PLAIN_READ, Backend, CaseBackend
from tests.seaweed import S3Server, prefix_of

# The tests below run here with the S3 backend (the fixture defined in this module).
from tests.test_cases import test_all_accepted_cases_in_one_file
from tests.test_storage_contract import test_returned_write_is_visible_to_another_process

__all__ = [
    "test_all_accepted_cases_in_one_file",
    "test_returned_write_is_visible_to_another_process",
]


@pytest.fixture
def backend(s3_server: S3Server) -> Backend:
    """ZarrStorage on the test S3 server, under a prefix named by the test's path."""

    def open_s3(path: Path, mode: Mode) -> DataStorageBase:
        return ZarrStorage(s3_server.store(prefix_of(path)), mode)

    store = (
        "__import__('zarr').storage.ObjectStore(__import__('tests.seaweed').seaweed.s3_store("
        f"{s3_server.endpoint!r}, {s3_server.bucket!r}, "
        "__import__('tests.seaweed').seaweed.prefix_of(sys.argv[1])))"
    )
    return Backend("zarr-s3", ".zarr", open_s3, ZARR_PLAIN_READ.format(store=store))


@pytest.fixture
def case_backend(backend: Backend) -> CaseBackend:
    """The case table's view of the S3 backend: every case in one store on S3."""
    return CaseBackend(backend.name, backend.suffix, backend.open)
