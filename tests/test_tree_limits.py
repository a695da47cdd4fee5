"""Storage keys that no backend can address are refused, and records of such keys skipped.

What each backend stores and refuses of the trees themselves is the table in tests/cases.py."""

import pickle
from pathlib import Path

import pytest

from corelay.io.storage import PickleStorage
from tests.backends import Backend


@pytest.mark.parametrize("key", ["kept\x00zz", "a\x00b", "a/\x00", "x\udcff"])
def test_keys_with_nul_or_surrogates_are_value_errors(
    backend: Backend, store_path: Path, key: str
) -> None:
    with backend.open(store_path, "w") as storage:
        storage["kept"] = 1
        storage["a"] = 2
        with pytest.raises(ValueError, match="invalid key"):
            storage[key] = 3
        with pytest.raises(ValueError, match="invalid key"):
            storage[key]
        with pytest.raises(ValueError, match="invalid key"):
            _ = key in storage
        assert storage["kept"] == 1 and storage["a"] == 2
        assert sorted(storage.keys()) == ["a", "kept"]


def test_pickle_record_with_an_unaddressable_key_is_skipped_with_a_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "upstream.pkl"
    with path.open("wb") as file:  # as corelay 1.0.0 writes records, with any key
        pickle.dump({"data": 1, "key": "kept\x00zz"}, file)
        pickle.dump({"data": 2, "key": "kept"}, file)
    with pytest.warns(RuntimeWarning, match=r"ignoring the record of key 'kept\\x00zz'"):
        storage = PickleStorage(path, "r")
    with storage:
        assert list(storage.keys()) == ["kept"]
        assert storage["kept"] == 2
