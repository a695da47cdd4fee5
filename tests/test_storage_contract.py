"""Behaviour every keyed storage shares: modes, keys, views, closing, and the documented errors."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corelay.base import Param
from corelay.io.storage import NoDataSource, NoDataTarget
from tests.backends import Backend
from tests.cases import assert_same_tree


def test_invalid_mode_touches_no_file(backend: Backend, store_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid mode 'x'"):
        backend.open(store_path, "x")
    assert not store_path.exists()


def test_read_mode_on_missing_file(backend: Backend, store_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        backend.open(store_path, "r")
    assert not store_path.exists()


def test_absent_key_is_no_data_source(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["present"] = 1
        with pytest.raises(NoDataSource, match="'absent'"):
            storage["absent"]
        assert "absent" not in storage
        assert "present" in storage


def test_write_replaces_value(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["key"] = np.zeros(3)
        storage["key"] = np.ones(3)  # same shape: upstream kept the old data
        storage["key"] = {"now": "a dict"}
    with backend.open(store_path, "r") as storage:
        assert_same_tree(storage["key"], {"now": "a dict"})


def test_rejected_tree_leaves_old_value(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["key"] = (1, 2)
        unstorable: Any = (3, {"fn": lambda: None})
        with pytest.raises(TypeError, match=r"data_out\[1\]\['fn'\]: unsupported type function"):
            storage["key"] = unstorable
        with pytest.raises(ValueError, match=r"data_out: invalid dict key"):
            storage["key"] = {"a/b": 1}
        assert storage["key"] == (1, 2)
        assert list(storage.keys()) == ["key"]


def test_append_mode_keeps_and_adds(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["first"] = 1
    with backend.open(store_path, "a") as storage:
        assert storage["first"] == 1
        storage["second"] = 2
    with backend.open(store_path, "r") as storage:
        assert sorted(storage.keys()) == ["first", "second"]
        assert storage["second"] == 2


def test_write_mode_starts_empty(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["old"] = 1
    with backend.open(store_path, "w") as storage:
        assert list(storage.keys()) == []


def test_read_only_write_is_no_data_target(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["key"] = 1
    with backend.open(store_path, "r") as storage:
        with pytest.raises(NoDataTarget):
            storage["key"] = 2
        assert storage["key"] == 1


def test_at_returns_view_and_leaves_original(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        fixed = storage.at(data_key="a")
        fixed.write(1)
        fixed["b"] = 2  # upstream wrote this to 'a'
        other = fixed.at(data_key="c")
        other.write(3)
        assert fixed.collect_attr(Param)["data_key"] == "a"
        assert storage.collect_attr(Param)["data_key"] is None  # still unset
        assert type(other) is type(storage)
        assert (fixed.read(), storage["b"], other.read()) == (1, 2, 3)


def test_at_rejects_unknown_and_mistyped(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        with pytest.raises(TypeError, match="no parameter 'path'"):
            storage.at(path="elsewhere")
        with pytest.raises(TypeError, match="data_key must be str, not int"):
            storage.at(data_key=3)


def test_no_data_key_is_type_error(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        with pytest.raises(TypeError, match="no data_key"):
            storage.read()
        with pytest.raises(TypeError, match="no data_key"):
            storage.write(1)
        with pytest.raises(TypeError, match="no data_key"):
            storage.exists()


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b"])
def test_invalid_keys(backend: Backend, store_path: Path, key: str) -> None:
    with backend.open(store_path, "w") as storage:
        with pytest.raises(ValueError, match="invalid key"):
            storage[key] = 1
        with pytest.raises(ValueError, match="invalid key"):
            storage[key]
        assert list(storage.keys()) == []


def test_non_str_key_is_type_error(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        with pytest.raises(TypeError):
            storage[1] = 1  # type: ignore[index]
        with pytest.raises(TypeError):
            storage[b"key"]  # type: ignore[index]
        with pytest.raises(TypeError):
            1 in storage  # type: ignore[operator]  # noqa: B015


def test_nested_key(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["group/inner"] = np.arange(3)
        assert "group/inner" in storage
        assert_same_tree(storage["group/inner"], np.arange(3))


def test_closed_storage_is_value_error(backend: Backend, store_path: Path) -> None:
    storage = backend.open(store_path, "w")
    storage["key"] = 1
    view = storage.at(data_key="key")
    storage.close()
    storage.close()  # idempotent
    for operation in (
        lambda: storage["key"],
        lambda: storage.keys(),
        lambda: view.read(),
        lambda: view.exists(),
        lambda: view.write(2),
    ):
        with pytest.raises(ValueError, match="closed"):
            operation()


def test_context_manager_closes(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        storage["key"] = 1
    with pytest.raises(ValueError, match="closed"):
        storage["key"]


def test_bool_is_true(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        assert bool(storage)


def test_returned_write_is_visible_to_another_process(backend: Backend, store_path: Path) -> None:
    storage = backend.open(store_path, "w")
    storage["key"] = np.arange(5)  # the storage stays open: the write itself reached the file
    check = subprocess.run(
        [sys.executable, "-c", backend.plain_read, str(store_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    storage.close()
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "4"
