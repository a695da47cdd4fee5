"""The contract tests a storage backend must pass, for backends of this library and others.

A backend's test module subclasses :class:`StorageTests` (a keyed storage) or
:class:`HashedCacheTests` (a cache keyed by input and metadata, like
:class:`~corelay.io.storage.HashedHDF5`) and implements its ``open`` hook (in the spirit of
``zarr.testing.store.StoreTests``); pytest then runs every test method against it::

    from corelay.io.testing import StorageTests

    class TestMyStorage(StorageTests):
        suffix = ".my"

        def open(self, path, mode):
            return MyStorage(path, mode)

Only test code imports this module: it imports pytest, which ``corelay.io`` never needs.
"""

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import numpy as np
import pytest

from corelay.base import Param
from corelay.io.storage import DataStorageBase, Mode, NoDataSource, NoDataTarget

__all__ = [
    "CONTRACT_META",
    "CONTRACT_TREES",
    "HashedCache",
    "HashedCacheTests",
    "StorageTests",
    "assert_same_tree",
]

#: Trees every backend writes and reads back exactly: each kind of node once.
CONTRACT_TREES: list[tuple[str, Any]] = [
    ("float64-2d", np.arange(6.0).reshape(2, 3)),
    ("big-endian-int", np.arange(4, dtype=">i4")),
    ("unicode-array", np.array(["", "ä", "日本語"])),
    ("bytes-array", np.array([b"ab", b"", b"xyz"])),
    ("zero-d-array", np.array(3.5)),
    ("empty-2d", np.zeros((3, 0))),
    ("non-contiguous", np.arange(20.0).reshape(4, 5)[::2, 1::2]),
    ("numpy-scalars", (np.float32(-1.5), np.int8(-3), np.bool_(True), np.str_("ünï"))),
    ("python-scalars", [True, -12345678901234, 0.1, complex(1.5, -2.0), "wörld", b"\x00", None]),
    ("dict-order", {"z": 1, "a": 2, "10": 4, "2": 5}),
    ("empty-containers", {"dict": {}, "tuple": (), "list": []}),
    ("nested", {"a": [(), {}, [[]]], "b": ({"c": (1, [2, {"d": None}])},)}),
]


class StorageTests:
    """The behaviour every keyed storage shares: round trips, modes, keys, views and errors.

    Subclass it in a test module whose class name starts with ``Test`` and implement
    :meth:`open`; set :attr:`suffix` to the file suffix the backend expects.
    """

    suffix: ClassVar[str] = ""
    """The suffix of the storage files the tests make."""

    def open(self, path: Path, mode: Mode) -> DataStorageBase:
        """Opens the backend's storage on ``path`` in ``mode``: the hook a backend implements."""
        raise NotImplementedError(f"{type(self).__name__} must implement open(path, mode)")

    @pytest.fixture
    def store_path(self, tmp_path: Path) -> Path:
        """A path for a storage file, in a fresh directory."""
        return tmp_path / f"store{self.suffix}"

    @pytest.fixture
    def storage(self, store_path: Path) -> Iterator[DataStorageBase]:
        """A storage opened for writing on :meth:`store_path`, closed after the test."""
        opened = self.open(store_path, "w")
        yield opened
        opened.close()

    @pytest.mark.parametrize(
        "tree", [tree for _, tree in CONTRACT_TREES], ids=[name for name, _ in CONTRACT_TREES]
    )
    def test_round_trip(self, storage: DataStorageBase, store_path: Path, tree: Any) -> None:
        storage["key"] = tree
        assert_same_tree(storage["key"], tree)
        storage.close()
        with self.open(store_path, "r") as reopened:
            assert_same_tree(reopened["key"], tree)

    def test_invalid_mode_touches_no_file(self, store_path: Path) -> None:
        with pytest.raises(ValueError, match="invalid mode 'x'"):
            self.open(store_path, "x")  # type: ignore[arg-type]  # the mistake under test
        assert not store_path.exists()

    def test_read_mode_on_missing_file(self, store_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            self.open(store_path, "r")
        assert not store_path.exists()

    def test_absent_key_is_no_data_source(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            storage["present"] = 1
            with pytest.raises(NoDataSource, match="'absent'"):
                storage["absent"]
            assert "absent" not in storage
            assert "present" in storage

    def test_write_replaces_value(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            storage["key"] = np.zeros(3)
            storage["key"] = np.ones(3)  # same shape: upstream kept the old data
            storage["key"] = {"now": "a dict"}
        with self.open(store_path, "r") as storage:
            assert_same_tree(storage["key"], {"now": "a dict"})

    def test_rejected_tree_leaves_old_value(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            storage["key"] = (1, 2)
            unstorable: Any = (3, {"fn": lambda: None})
            with pytest.raises(
                TypeError, match=r"data_out\[1\]\['fn'\]: unsupported type function"
            ):
                storage["key"] = unstorable
            with pytest.raises(ValueError, match=r"data_out: invalid dict key"):
                storage["key"] = {"a/b": 1}
            assert storage["key"] == (1, 2)
            assert list(storage.keys()) == ["key"]

    def test_append_mode_keeps_and_adds(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            storage["first"] = 1
        with self.open(store_path, "a") as storage:
            assert storage["first"] == 1
            storage["second"] = 2
        with self.open(store_path, "r") as storage:
            assert sorted(storage.keys()) == ["first", "second"]
            assert storage["second"] == 2

    def test_write_mode_starts_empty(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            storage["old"] = 1
        with self.open(store_path, "w") as storage:
            assert list(storage.keys()) == []

    def test_read_only_write_is_no_data_target(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            storage["key"] = 1
        with self.open(store_path, "r") as storage:
            with pytest.raises(NoDataTarget):
                storage["key"] = 2
            assert storage["key"] == 1

    def test_at_returns_view_and_leaves_original(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            fixed = storage.at(data_key="a")
            fixed.write(1)
            fixed["b"] = 2  # upstream wrote this to 'a'
            other = fixed.at(data_key="c")
            other.write(3)
            assert fixed.collect_attr(Param)["data_key"] == "a"
            assert storage.collect_attr(Param)["data_key"] is None  # still unset
            assert type(other) is type(storage)
            assert (fixed.read(), storage["b"], other.read()) == (1, 2, 3)

    def test_at_rejects_unknown_and_mistyped(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            with pytest.raises(TypeError, match="no parameter 'path'"):
                storage.at(path="elsewhere")
            with pytest.raises(TypeError, match="data_key must be str, not int"):
                storage.at(data_key=3)

    def test_no_data_key_is_type_error(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            with pytest.raises(TypeError, match="no data_key"):
                storage.read()
            with pytest.raises(TypeError, match="no data_key"):
                storage.write(1)
            with pytest.raises(TypeError, match="no data_key"):
                storage.exists()

    @pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b"])
    def test_invalid_keys(self, store_path: Path, key: str) -> None:
        with self.open(store_path, "w") as storage:
            with pytest.raises(ValueError, match="invalid key"):
                storage[key] = 1
            with pytest.raises(ValueError, match="invalid key"):
                storage[key]
            assert list(storage.keys()) == []

    def test_non_str_key_is_type_error(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            with pytest.raises(TypeError):
                storage[1] = 1  # type: ignore[index]
            with pytest.raises(TypeError):
                storage[b"key"]  # type: ignore[index]
            with pytest.raises(TypeError):
                1 in storage  # type: ignore[operator]  # noqa: B015

    def test_nested_key(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            storage["group/inner"] = np.arange(3)
            assert "group/inner" in storage
            assert_same_tree(storage["group/inner"], np.arange(3))

    def test_closed_storage_is_value_error(self, store_path: Path) -> None:
        storage = self.open(store_path, "w")
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

    def test_context_manager_closes(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            storage["key"] = 1
        with pytest.raises(ValueError, match="closed"):
            storage["key"]

    def test_bool_is_true(self, store_path: Path) -> None:
        with self.open(store_path, "w") as storage:
            assert bool(storage)


class HashedCache(Protocol):
    """What :class:`HashedCacheTests` uses of a hashed cache."""

    def read(self, data_in: Any, meta: Any) -> Any:
        """Returns the output stored for ``data_in`` and ``meta``."""
        ...

    def write(self, data_out: Any, data_in: Any, meta: Any) -> None:
        """Stores ``data_out`` as the output of ``data_in`` and ``meta``."""
        ...


#: Metadata of the entries :class:`HashedCacheTests` writes.
CONTRACT_META: dict[str, Any] = {"function": "pkg.step", "params": {"k": 3, "eps": 1e-3}}


class HashedCacheTests:
    """The behaviour every hashed cache shares: exact keys, round trips, refusals, read-only.

    Subclass it in a test module whose class name starts with ``Test`` and implement
    :meth:`open`; set :attr:`suffix` to the suffix of the store's path.
    """

    suffix: ClassVar[str] = ""
    """The suffix of the store paths the tests make."""

    def open(self, path: Path, mode: Mode) -> AbstractContextManager[HashedCache]:
        """Opens a cache on ``path`` in ``mode`` (``'w'``, ``'a'`` or ``'r'``), closed on exit.

        The hook a backend implements. ``'w'`` starts an empty store, ``'a'`` keeps the
        entries, ``'r'`` opens the store read-only.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement open(path, mode)")

    def contents(self, path: Path) -> object:
        """A snapshot of the store at ``path``: equal snapshots, nothing written.

        By default the bytes of the file, or of every file under ``path`` if it is a directory.
        """
        if path.is_dir():
            return {
                str(item.relative_to(path)): item.read_bytes()
                for item in path.rglob("*")
                if item.is_file()
            }
        return path.read_bytes()

    @pytest.fixture
    def store_path(self, tmp_path: Path) -> Path:
        """A path for a store, in a fresh directory."""
        return tmp_path / f"cache{self.suffix}"

    @pytest.mark.parametrize(
        "tree", [tree for _, tree in CONTRACT_TREES], ids=[name for name, _ in CONTRACT_TREES]
    )
    def test_round_trip(self, store_path: Path, tree: Any) -> None:
        data_in = np.arange(5)
        with self.open(store_path, "w") as cache:
            cache.write(tree, data_in, CONTRACT_META)
            assert_same_tree(cache.read(data_in, CONTRACT_META), tree)
        with self.open(store_path, "r") as cache:
            assert_same_tree(cache.read(data_in, CONTRACT_META), tree)

    def test_absent_entry_is_no_data_source(self, store_path: Path) -> None:
        with self.open(store_path, "w") as cache:
            with pytest.raises(NoDataSource):
                cache.read("in", CONTRACT_META)
            cache.write(np.arange(3), "in", CONTRACT_META)
            with pytest.raises(NoDataSource):
                cache.read("other", CONTRACT_META)
            with pytest.raises(NoDataSource):
                cache.read("in", {**CONTRACT_META, "params": {"k": 4, "eps": 1e-3}})

    def test_write_replaces_the_entry(self, store_path: Path) -> None:
        with self.open(store_path, "w") as cache:
            cache.write(np.zeros(3), "in", CONTRACT_META)
            cache.write(np.ones(3), "in", CONTRACT_META)  # same shape: upstream kept the old data
            cache.write({"now": "a dict"}, "in", CONTRACT_META)
        with self.open(store_path, "a") as cache:
            assert_same_tree(cache.read("in", CONTRACT_META), {"now": "a dict"})
            cache.write((np.arange(2),), "in", CONTRACT_META)
        with self.open(store_path, "r") as cache:
            assert_same_tree(cache.read("in", CONTRACT_META), (np.arange(2),))

    def test_any_bit_of_input_or_meta_is_another_entry(self, store_path: Path) -> None:
        base = np.linspace(1.0, 2.0, 6)
        flipped = base.copy()
        flipped.view(np.uint8)[-1] ^= 1
        inputs: list[Any] = [base, flipped, base.astype(np.float32), base.reshape(2, 3), (base,)]
        metas: list[Any] = [None, {}, {"a": 1}, {"a": 1.0}, {"a": True}, {"a": np.int64(1)}]
        with self.open(store_path, "w") as cache:
            for index, data_in in enumerate(inputs):
                cache.write(np.array([index]), data_in, None)
            for index, meta in enumerate(metas):
                cache.write(np.array([index]), "in", meta)
            for index, data_in in enumerate(inputs):
                assert_same_tree(cache.read(data_in, None), np.array([index]))
            for index, meta in enumerate(metas):
                assert_same_tree(cache.read("in", meta), np.array([index]))

    def test_memory_layout_and_dict_order_are_not_part_of_the_key(self, store_path: Path) -> None:
        c_order = np.arange(6.0).reshape(2, 3)
        with self.open(store_path, "w") as cache:
            cache.write(np.array([1]), c_order, {"x": 1, "y": 2})
            assert_same_tree(
                cache.read(np.asfortranarray(c_order), {"y": 2, "x": 1}), np.array([1])
            )
            assert_same_tree(
                cache.read(np.repeat(c_order, 2, axis=1)[:, ::2], {"x": 1, "y": 2}), np.array([1])
            )

    @pytest.mark.parametrize(
        ("data_out", "meta", "error", "message"),
        [
            (
                (3, {"fn": lambda: None}),
                None,
                TypeError,
                r"^data_out\[1\]\['fn'\]: unsupported type function",
            ),
            ({"a/b": 1}, None, ValueError, r"^data_out: invalid dict key"),
            (np.zeros(2, dtype="f4,i4"), None, TypeError, r"^data_out: unsupported structured"),
            (np.arange(2), {"fn": print}, TypeError, r"^meta\['fn'\]: unsupported type builtin"),
            (np.arange(2), {"s": {1, 2}}, TypeError, r"^meta\['s'\]: unsupported type set"),
            (np.arange(2), {1: "int key"}, TypeError, r"^meta: dict key 1 is int"),
            (np.arange(2), {"a/b": 1}, ValueError, r"^meta: invalid dict key"),
        ],
        ids=[
            "output-function",
            "output-key",
            "output-dtype",
            "meta-function",
            "meta-set",
            "meta-int-key",
            "meta-key",
        ],
    )
    def test_refused_write_writes_nothing(
        self, store_path: Path, data_out: Any, meta: Any, error: type[Exception], message: str
    ) -> None:
        with self.open(store_path, "w") as cache, pytest.raises(error, match=message):
            cache.write(data_out, "new", meta)
        never_written = store_path.with_name(f"never-written{self.suffix}")
        with self.open(never_written, "w"):
            pass
        assert self.contents(store_path) == self.contents(never_written)
        with self.open(store_path, "w") as cache:
            cache.write(np.arange(3), "in", CONTRACT_META)
        before = self.contents(store_path)
        with self.open(store_path, "a") as cache:
            with pytest.raises(error, match=message):
                cache.write(data_out, "new", meta)
            with pytest.raises(error, match=message):
                cache.write(data_out, "in", CONTRACT_META if meta is None else meta)
            assert_same_tree(cache.read("in", CONTRACT_META), np.arange(3))
            with pytest.raises(NoDataSource):
                cache.read("new", meta)
        assert self.contents(store_path) == before

    def test_unhashable_input_is_type_error(self, store_path: Path) -> None:
        with self.open(store_path, "w") as cache:
            cache.write(np.arange(3), "in", None)
        before = self.contents(store_path)
        with self.open(store_path, "a") as cache:
            with pytest.raises(TypeError, match="unsupported type generator"):
                cache.write(np.arange(2), (1, (x for x in "ab")), None)
            with pytest.raises(TypeError, match="unsupported type generator"):
                cache.read((1, (x for x in "ab")), None)
        assert self.contents(store_path) == before

    def test_read_only_write_is_no_data_target(self, store_path: Path) -> None:
        with self.open(store_path, "w") as cache:
            cache.write(np.arange(3), "in", None)
        before = self.contents(store_path)
        with self.open(store_path, "r") as cache:
            with pytest.raises(NoDataTarget, match="read-only"):
                cache.write(np.arange(4), "other", None)
            with pytest.raises(NoDataTarget, match="read-only"):
                cache.write(np.arange(4), "in", None)
            assert_same_tree(cache.read("in", None), np.arange(3))
        assert self.contents(store_path) == before

    def test_write_mode_starts_empty(self, store_path: Path) -> None:
        with self.open(store_path, "w") as cache:
            cache.write(np.arange(3), "in", None)
        with self.open(store_path, "w") as cache, pytest.raises(NoDataSource):
            cache.read("in", None)


def assert_same_tree(actual: Any, expected: Any, path: str = "tree") -> None:
    """Asserts ``actual`` is ``expected`` read back: same types, dtypes, shapes, bits, order."""
    if isinstance(expected, dict):
        expected_dict = cast(dict[str, Any], expected)
        assert type(actual) is OrderedDict, f"{path}: {type(actual)} is not OrderedDict"
        actual_dict = cast(OrderedDict[str, Any], actual)
        assert list(actual_dict) == list(expected_dict), f"{path}: keys differ"
        for key, value in expected_dict.items():
            assert_same_tree(actual_dict[key], value, f"{path}[{key!r}]")
        return
    assert type(actual) is type(expected), f"{path}: {type(actual)} is not {type(expected)}"
    if isinstance(expected, tuple | list):
        expected_items = cast(Sequence[Any], expected)
        actual_items: Sequence[Any] = actual
        assert len(actual_items) == len(expected_items), f"{path}: lengths differ"
        for index, (item, expected_item) in enumerate(
            zip(actual_items, expected_items, strict=True)
        ):
            assert_same_tree(item, expected_item, f"{path}[{index}]")
    elif isinstance(expected, np.ndarray | np.generic):
        expected_array = np.asarray(cast(Any, expected))
        actual_array = np.asarray(actual)
        assert actual_array.dtype == expected_array.dtype, f"{path}: dtypes differ"
        assert actual_array.shape == expected_array.shape, f"{path}: shapes differ"
        equal_nan = expected_array.dtype.kind in "fc"
        assert np.array_equal(actual_array, expected_array, equal_nan=equal_nan), path
        if expected_array.dtype.kind not in "SU":
            actual_bytes = np.ascontiguousarray(actual_array).tobytes()
            assert actual_bytes == np.ascontiguousarray(expected_array).tobytes(), f"{path}: bits"
    elif isinstance(expected, float | complex):
        assert repr(actual) == repr(expected), f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
