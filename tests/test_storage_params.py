"""The storages' parameters: data_key is a typed Param, as corelay's processors expect."""

from pathlib import Path
from typing import Any

import pytest

from corelay.base import Param
from corelay.io.storage import HDF5Storage, NoDataSource, NoDataTarget, NoStorage, PickleStorage
from corelay.plugboard import Plugboard

STORAGES: list[type[HDF5Storage | PickleStorage]] = [HDF5Storage, PickleStorage]


@pytest.mark.parametrize("kind", STORAGES)
def test_class_level_data_key_is_the_parameter(kind: type[HDF5Storage | PickleStorage]) -> None:
    # Type checkers see the declared str; at run time the class gives the parameter.
    param: object = getattr(kind, "data_key")  # noqa: B009
    assert isinstance(param, Param)
    assert param.__name__ == "data_key"
    assert param.dtype == (str,)
    assert not param.optional
    assert list(kind.collect(Param)) == ["data_key"]
    assert issubclass(kind, Plugboard)


@pytest.mark.parametrize("kind", STORAGES)
def test_assigning_a_wrong_data_key_fails_at_the_assignment(
    kind: type[HDF5Storage | PickleStorage], tmp_path: Path
) -> None:
    with kind(tmp_path / "store", "w", data_key="a") as storage:
        five: Any = 5
        with pytest.raises(TypeError, match=rf"{kind.__name__}\.data_key must be str, not int"):
            storage.data_key = five
        assert storage.data_key == "a"
        storage.data_key = "b"
        storage.write(1)
        assert storage["b"] == 1
        with pytest.raises(TypeError, match="data_key"):
            kind(tmp_path / "other", "w", data_key=five)


@pytest.mark.parametrize("kind", STORAGES)
def test_instance_default_data_key(kind: type[HDF5Storage | PickleStorage], tmp_path: Path) -> None:
    with kind(tmp_path / "store", "w") as storage:
        storage.update_defaults(data_key="fallback")
        storage.write(2)
        assert storage.at(data_key="other").data_key == "other"
        assert storage.data_key == "fallback"
        assert storage["fallback"] == 2
        storage.reset_defaults()
        with pytest.raises(TypeError, match="no data_key"):
            storage.read()


@pytest.mark.parametrize("kind", STORAGES)
def test_closed_storage_is_false(kind: type[HDF5Storage | PickleStorage], tmp_path: Path) -> None:
    storage = kind(tmp_path / "store", "w")
    view = storage.at(data_key="a")
    assert storage
    assert view
    storage.close()
    assert not storage
    assert not view  # views share the file
    storage.close()
    assert not storage


def test_no_storage_at_refuses_every_parameter() -> None:
    storage = NoStorage()
    unexpected = r"NoStorage\.at\(\) got an unexpected keyword argument"
    with pytest.raises(TypeError, match=f"{unexpected} 'bogus'"):
        storage.at(bogus=1)  # type: ignore[call-arg]  # the mistake under test
    with pytest.raises(TypeError, match=f"{unexpected} 'data_key'"):
        storage.at(data_key="a")  # type: ignore[call-arg]  # the mistake under test
    assert storage.at() is storage
    # A key addresses nothing, so reading and writing still say there is no store.
    with pytest.raises(NoDataSource):
        storage["a"]
    with pytest.raises(NoDataTarget):
        storage["a"] = 1
    with pytest.raises(NoDataSource):
        _ = "a" in storage
