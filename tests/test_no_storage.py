"""NoStorage: the placeholder that stores nothing."""

import pytest

from corelay.io import NoDataSource, NoDataTarget, NoStorage


def test_every_operation_says_there_is_no_store() -> None:
    storage = NoStorage()
    assert not storage
    with pytest.raises(NoDataSource, match=r"No Data Source available\."):
        storage.read()
    with pytest.raises(NoDataTarget, match=r"No Data Target available\."):
        storage.write(1)
    with pytest.raises(NoDataSource):
        storage.exists()
    with pytest.raises(NoDataSource):
        storage.keys()
    with pytest.raises(NoDataSource):
        storage["key"]
    with pytest.raises(NoDataTarget):
        storage["key"] = 1
    with storage as entered:
        assert entered is storage
    storage.close()


def test_exception_messages() -> None:
    assert str(NoDataSource()) == "No Data Source available."
    assert str(NoDataSource("gone")) == "gone"
    assert str(NoDataTarget()) == "No Data Target available."
