"""The shared table of trees and the storage contract, for ZarrStorage on S3 (SeaweedFS)."""

from pathlib import Path

import pytest

from corelay.io.storage import DataStorageBase, ZarrStorage
from tests.backends import ZARR_PLAIN_READ, Backend
from tests.seaweed import S3Server, prefix_of

# The tests below run here with the S3 backend (the fixture defined in this module).
from tests.test_roundtrip import test_all_cases_in_one_file, test_round_trip
from tests.test_storage_contract import (
    test_absent_key_is_no_data_source,
    test_append_mode_keeps_and_adds,
    test_at_rejects_unknown_and_mistyped,
    test_at_returns_view_and_leaves_original,
    test_bool_is_true,
    test_closed_storage_is_value_error,
    test_context_manager_closes,
    test_invalid_keys,
    test_invalid_mode_touches_no_file,
    test_nested_key,
    test_no_data_key_is_type_error,
    test_non_str_key_is_type_error,
    test_read_mode_on_missing_file,
    test_read_only_write_is_no_data_target,
    test_rejected_tree_leaves_old_value,
    test_returned_write_is_visible_to_another_process,
    test_write_mode_starts_empty,
    test_write_replaces_value,
)

__all__ = [
    "test_absent_key_is_no_data_source",
    "test_all_cases_in_one_file",
    "test_append_mode_keeps_and_adds",
    "test_at_rejects_unknown_and_mistyped",
    "test_at_returns_view_and_leaves_original",
    "test_bool_is_true",
    "test_closed_storage_is_value_error",
    "test_context_manager_closes",
    "test_invalid_keys",
    "test_invalid_mode_touches_no_file",
    "test_nested_key",
    "test_no_data_key_is_type_error",
    "test_non_str_key_is_type_error",
    "test_read_mode_on_missing_file",
    "test_read_only_write_is_no_data_target",
    "test_rejected_tree_leaves_old_value",
    "test_returned_write_is_visible_to_another_process",
    "test_round_trip",
    "test_write_mode_starts_empty",
    "test_write_replaces_value",
]


@pytest.fixture
def backend(s3_server: S3Server) -> Backend:
    """ZarrStorage on the test S3 server, under a prefix named by the test's path."""

    def open_s3(path: Path, mode: str) -> DataStorageBase:
        return ZarrStorage(s3_server.store(prefix_of(path)), mode)

    store = (
        "__import__('zarr').storage.ObjectStore(__import__('tests.seaweed').seaweed.s3_store("
        f"{s3_server.endpoint!r}, {s3_server.bucket!r}, "
        "__import__('tests.seaweed').seaweed.prefix_of(sys.argv[1])))"
    )
    return Backend("zarr-s3", ".zarr", open_s3, ZARR_PLAIN_READ.format(store=store))
