"""PickleStorage: record files, safe loading, torn records, killed writers, corelay 1.0.0 files."""

import contextlib
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import tracemalloc
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corelay.io import _pickle
from corelay.io.describe import describe_file, find_problems
from corelay.io.storage import HDF5Storage, Mode, NoDataSource, PickleStorage
from tests.cases import TREE_CASES, assert_same_tree
from tests.upstream import FIXTURES, decode, fixture_description, run_upstream

# ------------------------------------------------------------------------------------- helpers


def _record(key: object, data: object, protocol: int = 4) -> bytes:
    """A record as corelay 1.0.0 writes it (plain pickle; only for trusted test data)."""
    return pickle.dumps({"data": data, "key": key}, protocol=protocol)


def _ordered(value: object) -> Any:
    """``value`` with every dict an OrderedDict, as this library reads trees back."""
    if isinstance(value, dict):
        items = cast("dict[object, object]", value)
        return OrderedDict((key, _ordered(item)) for key, item in items.items())
    if isinstance(value, tuple | list):
        converted = [_ordered(item) for item in cast("list[object]", value)]
        return tuple(converted) if isinstance(value, tuple) else converted
    return value


def _open_quietly(path: Path, mode: Mode) -> PickleStorage:
    """Opens ``path``, failing the test on any warning (a torn record, for example)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return PickleStorage(path, mode)


# ------------------------------------------------------------------------- the record file


def test_last_record_wins_and_keys_list_every_record(tmp_path: Path) -> None:
    path = tmp_path / "store.pkl"
    with PickleStorage(path, "w") as storage:
        storage["b"] = 1
        storage["a/nested"] = "x"
        storage["b"] = (2, 3)
        storage["c"] = None
    with _open_quietly(path, "r") as storage:
        assert list(storage.keys()) == ["b", "a/nested", "c"]  # order of first records
        assert storage["b"] == (2, 3)
        assert storage["a/nested"] == "x"
        assert storage["c"] is None
    records = _read_all_records(path)
    assert [record["key"] for record in records] == ["b", "a/nested", "b", "c"]
    assert all(list(record) == ["data", "key"] for record in records)


def _read_all_records(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with open(path, "rb") as file:
        while file.tell() < path.stat().st_size:
            records.append(pickle.load(file))  # our own file: trusted
    return records


def test_append_mode_appends_to_existing_records(tmp_path: Path) -> None:
    path = tmp_path / "store.pkl"
    with PickleStorage(path, "w") as storage:
        storage["x"] = np.arange(3)
    before = path.read_bytes()
    with _open_quietly(path, "a") as storage:
        assert list(storage.keys()) == ["x"]
        assert_same_tree(storage["x"], np.arange(3))
        storage["x"] = np.arange(4)
        storage["y"] = "new"
    after = path.read_bytes()
    assert after.startswith(before)
    with _open_quietly(path, "r") as storage:
        assert list(storage.keys()) == ["x", "y"]
        assert_same_tree(storage["x"], np.arange(4))


def test_data_caches_reads_and_writes_drop_them(tmp_path: Path) -> None:
    with PickleStorage(tmp_path / "store.pkl", "w") as storage:
        written = np.arange(3)
        storage["k"] = written
        assert storage.data == {}  # the caller's object is not what a read returns
        written[0] = 99
        first = storage["k"]
        assert_same_tree(first, np.arange(3))
        assert storage.data["k"] is first
        view = storage.at(data_key="k")
        assert view.read() is first  # views share the cache
        view.write({"new": 1})
        assert "k" not in storage.data
        assert_same_tree(storage["k"], {"new": 1})


def test_io_is_the_open_file(tmp_path: Path) -> None:
    storage = PickleStorage(tmp_path / "store.pkl", "w")
    storage["k"] = 1
    assert not storage.io.closed
    assert storage.io.seekable()
    storage.close()
    assert storage.io.closed


def test_writes_plain_types_that_load_back_writable(tmp_path: Path) -> None:
    class LocalMapping(OrderedDict[str, Any]):
        pass

    path = tmp_path / "store.pkl"
    read_only = np.arange(4.0)
    read_only.setflags(write=False)
    mapped = np.memmap(tmp_path / "mapped.bin", dtype=np.int16, mode="w+", shape=(3,))
    mapped[:] = [1, 2, 3]
    tree: dict[str, Any] = {
        "dd": defaultdict(list, {"a": [1]}),
        "lm": LocalMapping(b=np.float32(2)),
        "mm": mapped,
        "ro": read_only,
    }
    with PickleStorage(path, "w") as storage:
        storage["k"] = tree
    raw = path.read_bytes()
    for name in (b"defaultdict", b"LocalMapping", b"memmap", b"OrderedDict"):
        assert name not in raw
    with _open_quietly(path, "r") as storage:
        loaded = storage["k"]
    expected = {
        "dd": {"a": [1]},
        "lm": {"b": np.float32(2)},
        "mm": np.array([1, 2, 3], dtype=np.int16),
        "ro": np.arange(4.0),
    }
    assert_same_tree(loaded, expected)
    assert loaded["ro"].flags.writeable
    assert loaded["mm"].flags.writeable


def test_arrays_without_a_writable_contiguous_buffer_keep_dtype_and_values(
    tmp_path: Path,
) -> None:
    read_only = np.arange(6, dtype=">i4").reshape(2, 3)
    read_only.setflags(write=False)
    tree = (
        np.arange(12, dtype=">f8").reshape(3, 4)[::2, 1::2],  # strided, big-endian
        np.arange(24, dtype=">u2").reshape(2, 3, 4).transpose(1, 0, 2),  # neither C nor F
        read_only,
        np.asfortranarray(np.arange(6, dtype=">c8").reshape(2, 3)),
    )
    path = tmp_path / "store.pkl"
    with PickleStorage(path, "w") as storage:
        storage["k"] = tree
    with _open_quietly(path, "r") as storage:
        loaded = storage["k"]
    assert_same_tree(loaded, tree)
    assert [array.dtype.str for array in loaded] == [">f8", ">u2", ">i4", ">c8"]
    assert all(array.flags.writeable for array in loaded)


_UNSTORABLE: list[tuple[str, Any]] = [
    ("object-array", np.array([1, "a"], dtype=object)),
    ("structured", np.zeros(2, dtype=[("a", "i4")])),
    ("function", {"params": {"fn": len}}),
    ("int-key", {1: 2}),
    ("empty-key", {"": 1}),
    ("slash-key", [{"a/b": 1}]),
    ("int-overflow", (2**63,)),
    ("datetime", np.array(["2020-01-01"], dtype="datetime64[D]")),
    ("set", {1, 2}),
]


@pytest.mark.parametrize("tree", [tree for _, tree in _UNSTORABLE], ids=[i for i, _ in _UNSTORABLE])
def test_rejects_what_hdf5_rejects_before_appending(tmp_path: Path, tree: Any) -> None:
    reference = HDF5Storage(tmp_path / "reference.h5", "w")
    with reference, pytest.raises((TypeError, ValueError)) as expected:
        reference["k"] = tree
    path = tmp_path / "store.pkl"
    with PickleStorage(path, "w") as storage:
        storage["k"] = 1
        size = path.stat().st_size
        with pytest.raises(expected.type, match=re.escape(str(expected.value))):
            storage["k"] = tree
        assert path.stat().st_size == size
        assert storage["k"] == 1
    with _open_quietly(path, "r") as storage:
        assert list(storage.keys()) == ["k"]


def test_write_failing_part_way_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.pkl"
    poison = np.arange(3)
    sizes_at_failure: list[int] = []

    def failing_reducer_override(self: pickle.Pickler, obj: object) -> Any:
        if isinstance(obj, np.ndarray) and obj.base is poison:
            sizes_at_failure.append(path.stat().st_size)
            raise KeyboardInterrupt
        return NotImplemented

    with PickleStorage(path, "w") as storage:
        storage["k"] = "old"
        size = path.stat().st_size
        monkeypatch.setattr(_pickle.TreePickler, "reducer_override", failing_reducer_override)
        with pytest.raises(KeyboardInterrupt):
            storage["k"] = (np.zeros(2**17), poison[:])  # the 1 MiB array reaches the file first
        monkeypatch.undo()
        assert sizes_at_failure and sizes_at_failure[0] > size + 2**20  # there was a partial record
        assert path.stat().st_size == size
        assert storage["k"] == "old"
        storage["other"] = 2
    with _open_quietly(path, "r") as storage:
        assert list(storage.keys()) == ["k", "other"]
        assert (storage["k"], storage["other"]) == ("old", 2)


def test_records_of_every_protocol_and_shape_are_indexed(tmp_path: Path) -> None:
    long_key = "k" * 70_000  # longer than the index reads: found by unpickling its record
    nested = {"key": "inner", "data": 0}
    raw = b"".join(
        [
            _record("p0", np.arange(2), protocol=0),
            _record("p2", (b"\xff", 1j), protocol=2),
            pickle.dumps({"key": "key-first", "data": nested}, protocol=5),
            _record("same", "same", protocol=4),  # the key is a memo reference
            _record(long_key, [1.5], protocol=5),
        ]
    )
    path = tmp_path / "store.pkl"
    path.write_bytes(raw)
    with _open_quietly(path, "r") as storage:
        assert list(storage.keys()) == ["p0", "p2", "key-first", "same", long_key]
        assert_same_tree(storage["p0"], np.arange(2))
        assert_same_tree(storage["p2"], (b"\xff", 1j))
        assert_same_tree(storage["key-first"], nested)
        assert storage["same"] == "same"
        assert storage[long_key] == [1.5]


# ----------------------------------------------------------------------------- safe loading


class _Call:
    """Pickles as the call ``function(*args)``: what a hostile file runs on a plain load."""

    def __init__(self, function: Callable[..., object], *args: object) -> None:
        self.function = function
        self.args = args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.function, self.args


class Payload:
    """A class of this module, whose unpickling writes the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, str]) -> None:
        Path(state["marker"]).write_text("ran")


def _text(value: str) -> bytes:
    encoded = value.encode()
    return b"\x8c" + bytes([len(encoded)]) + encoded  # SHORT_BINUNICODE


def _record_calling(module: str, name: str, argument: str) -> bytes:
    """``{'data': module.name(argument), 'key': 'evil'}``, written opcode by opcode."""
    call = b"c" + f"{module}\n{name}\n".encode() + _text(argument) + b"\x85R"
    return b"\x80\x04}(" + _text("data") + call + _text("key") + _text("evil") + b"u."


class Hostile(NamedTuple):
    """A record ``'evil'`` that runs code when loaded with plain pickle."""

    raw: bytes
    refused: str


def _os_system(marker: Path) -> Hostile:
    return Hostile(_record_calling("os", "system", f"touch {marker}"), "os.system")


def _builtins_eval(marker: Path) -> Hostile:
    source = f"open({str(marker)!r}, 'w').close()"
    return Hostile(_record_calling("builtins", "eval", source), "builtins.eval")


def _popen(marker: Path) -> Hostile:
    call = _Call(subprocess.Popen, ["touch", str(marker)])
    return Hostile(_record("evil", call), "subprocess.Popen")


def _class_of_this_module(marker: Path) -> Hostile:
    return Hostile(_record("evil", Payload(str(marker))), f"{__name__}.Payload")


def _reduce_writing_file(marker: Path) -> Hostile:
    call = _Call(Path.write_text, marker, "ran")
    return Hostile(_record("evil", call), "pathlib.Path.write_text")


def _nested_in_a_tree(marker: Path) -> Hostile:
    tree = {"fine": np.arange(3), "deep": (1, [_Call(subprocess.call, ["touch", str(marker)])])}
    return Hostile(_record("evil", tree), "subprocess.call")


def _importing_a_module(marker: Path) -> Hostile:
    module = f"corelay_hostile_{random.randrange(10**9)}"
    source = f"open({str(marker)!r}, 'w').close()\n\ndef run(argument):\n    return argument\n"
    (marker.parent / f"{module}.py").write_text(source)
    return Hostile(_record_calling(module, "run", "unused"), f"{module}.run")


_HOSTILE = [
    _os_system,
    _builtins_eval,
    _popen,
    _class_of_this_module,
    _reduce_writing_file,
    _nested_in_a_tree,
    _importing_a_module,
]


def _run_plain_pickle(raw: bytes) -> None:
    record = pickle.loads(raw)
    data = record["data"]
    if isinstance(data, subprocess.Popen):
        data.wait()


@pytest.mark.parametrize("make", _HOSTILE, ids=[make.__name__.strip("_") for make in _HOSTILE])
def test_hostile_record_is_refused_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], Hostile]
) -> None:
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    modules_before = set(sys.modules)
    marker = tmp_path / "marker"
    hostile = make(marker)
    path = tmp_path / "hostile.pkl"
    path.write_bytes(_record("good", np.arange(3)) + hostile.raw + _record("after", "fine"))
    for mode in ("r", "a"):
        with _open_quietly(path, mode) as storage:  # opening unpickles nothing
            assert list(storage.keys()) == ["good", "evil", "after"]
            assert_same_tree(storage["good"], np.arange(3))
            assert storage["after"] == "fine"
            with pytest.raises(pickle.UnpicklingError) as refused:
                storage["evil"]
            assert f"refused to load global '{hostile.refused}'" in str(refused.value)
            assert str(path) in str(refused.value)
    assert not marker.exists()
    assert set(sys.modules) == modules_before  # nothing was imported
    # The record is live: plain pickle runs it.
    _run_plain_pickle(hostile.raw)
    assert marker.exists()


def test_hostile_key_is_refused_on_open(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    raw = _record("good", 1) + _record(_Call(eval, f"open({str(marker)!r}, 'w').close()"), 2)
    path = tmp_path / "hostile.pkl"
    path.write_bytes(raw)
    for mode in ("r", "a"):
        with pytest.raises(
            pickle.UnpicklingError, match=re.escape("refused to load global 'builtins.eval'")
        ):
            PickleStorage(path, mode)
    assert not marker.exists()
    assert path.read_bytes() == raw


def test_only_the_allowed_globals_resolve() -> None:
    with open(os.devnull, "rb") as file:
        unpickler = _pickle.TreeUnpickler(file, "test")
        # NumPy's names resolve to inert stand-ins; checked arrays are made from them later.
        assert unpickler.find_class("numpy", "ndarray") is not np.ndarray
        assert unpickler.find_class("numpy", "dtype") is not np.dtype
        assert unpickler.find_class("collections", "OrderedDict") is OrderedDict
        for module, name in [("numpy", "load"), ("builtins", "getattr"), ("numpy", "frombuffer")]:
            with pytest.raises(_pickle.RefusedGlobalError, match=f"'{module}.{name}'"):
                unpickler.find_class(module, name)
        with pytest.raises(_pickle.RefusedGlobalError, match="codec 'rot13'"):
            unpickler.find_class("_codecs", "encode")("text", "rot13")


@pytest.mark.parametrize(
    "raw",
    [b"hello, world\n", b"\x00\x01\x02", _record([1], 2)[:-1] + b"\x00", b"\x89HDF\r\n\x1a\n"],
    ids=["text", "zeros", "bad-opcode", "hdf5-signature"],
)
def test_bytes_that_are_not_records_are_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "store.pkl"
    good = _record("good", 1)
    path.write_bytes(good + raw)
    for mode in ("r", "a"):
        with pytest.raises(pickle.UnpicklingError, match=f"record at byte {len(good)}"):
            PickleStorage(path, mode)
    assert path.read_bytes() == good + raw  # 'a' cut nothing


@pytest.mark.parametrize(
    "raw", [pickle.dumps([1, 2]), _record(7, "int key"), pickle.dumps({"key": "no data"})]
)
def test_pickles_that_are_not_records_are_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "store.pkl"
    path.write_bytes(raw)
    with pytest.raises(pickle.UnpicklingError, match="not a"):
        PickleStorage(path, "r")


def test_an_hdf5_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.pkl"
    with h5py.File(path, "w") as file:
        file.create_dataset("x", data=np.arange(3))
    raw = path.read_bytes()
    with pytest.raises(pickle.UnpicklingError, match="record at byte 0"):
        PickleStorage(path, "a")
    assert path.read_bytes() == raw


# ---------------------------------------------------------------------- reading without copies


def test_open_skips_payloads_and_read_makes_no_second_copy(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    big = np.random.default_rng(0).standard_normal(2_000_000)  # 16 MB
    tracemalloc.start()
    try:
        with PickleStorage(path, "w") as storage:
            tracemalloc.reset_peak()
            storage["big"] = big
            write_peak = tracemalloc.get_traced_memory()[1]
            storage["small"] = 1
        tracemalloc.reset_peak()
        with PickleStorage(path, "r") as storage:
            open_peak = tracemalloc.get_traced_memory()[1]
            assert storage["small"] == 1
            small_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            loaded = storage["big"]
            read_extra = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert_same_tree(loaded, big)
    assert write_peak < big.nbytes // 20  # the array is written from its own memory
    assert open_peak < big.nbytes // 20  # indexing reads no payload
    assert small_peak < big.nbytes // 20  # reading one key unpickles only its record
    assert read_extra < big.nbytes * 1.05  # the array, and not a second copy


# ----------------------------------------------------------------------------- torn records


def _write_steps(path: Path, steps: list[tuple[str, Any]]) -> list[int]:
    """Writes the steps, returning the file size after each returned write."""
    ends: list[int] = []
    with PickleStorage(path, "w") as storage:
        for key, value in steps:
            storage[key] = value
            ends.append(path.stat().st_size)
    return ends


def _expected_after(steps: list[tuple[str, Any]], count: int) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for key, value in steps[:count]:
        expected[key] = value
    return expected


def _open_torn_copy(
    full: bytes, path: Path, offset: int, ends: list[int], mode: Mode
) -> tuple[PickleStorage, int]:
    """Opens ``full`` cut at ``offset``, checking the warning; returns the storage and how many
    records must have survived."""
    path.write_bytes(full[:offset])
    boundaries = [0, *ends]
    complete = sum(1 for end in ends if end <= offset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        storage = PickleStorage(path, mode)
    if offset in boundaries:
        assert [str(warning.message) for warning in caught] == []
    else:
        assert len(caught) == 1, [str(warning.message) for warning in caught]
        assert caught[0].category is RuntimeWarning
        message = str(caught[0].message)
        assert str(path) in message
        assert f"torn record at byte {boundaries[complete]}" in message
    return storage, complete


_STEPS: list[tuple[str, Any]] = [
    ("array", np.arange(5.0)),
    ("tree", {"a": (1, "x"), "b": [None, b"\x00"]}),
    ("text", "héllo"),
    ("array", np.array([[1, 2]], dtype=np.int8)),  # replaces the first record's value
    ("scalar", np.complex64(1 - 2j)),
]


def test_torn_last_record_at_every_offset(tmp_path: Path) -> None:
    source = tmp_path / "full.pkl"
    ends = _write_steps(source, _STEPS)
    full = source.read_bytes()
    path = tmp_path / "torn.pkl"
    for offset in range(len(full) + 1):
        storage, complete = _open_torn_copy(full, path, offset, ends, "r")
        expected = _expected_after(_STEPS, complete)
        with storage:
            assert list(storage.keys()) == list(expected), offset
            for key, value in expected.items():
                assert_same_tree(storage[key], value, f"{key} at offset {offset}")


def test_append_mode_cuts_a_torn_record_before_appending(tmp_path: Path) -> None:
    source = tmp_path / "full.pkl"
    ends = _write_steps(source, _STEPS)
    full = source.read_bytes()
    path = tmp_path / "torn.pkl"
    for offset in range(len(full) + 1):
        storage, complete = _open_torn_copy(full, path, offset, ends, "a")
        good_end = ([0, *ends])[complete]
        assert path.read_bytes() == full[:good_end]
        with storage:
            storage["appended"] = offset
        expected = _expected_after(_STEPS, complete)
        with _open_quietly(path, "r") as storage:
            assert list(storage.keys()) == [*expected, "appended"], offset
            assert storage["appended"] == offset
            for key, value in expected.items():
                assert_same_tree(storage[key], value, f"{key} at offset {offset}")


def test_torn_record_inside_a_large_payload(tmp_path: Path) -> None:
    source = tmp_path / "full.pkl"
    steps: list[tuple[str, Any]] = [("small", 1), ("big", np.arange(2**18, dtype=np.float64))]
    ends = _write_steps(source, steps)
    full = source.read_bytes()
    path = tmp_path / "torn.pkl"
    for offset in [ends[0] + 1, ends[0] + 100, ends[0] + 2**20, ends[1] - 8, ends[1] - 1]:
        storage, complete = _open_torn_copy(full, path, offset, ends, "r")
        with storage:
            assert complete == 1
            assert list(storage.keys()) == ["small"]
            assert storage["small"] == 1


# --------------------------------------------------------------------- corelay 1.0.0 files


def test_reads_the_file_corelay_1_0_0_wrote() -> None:
    described = fixture_description()["files"]["picklestorage.pkl"]
    with _open_quietly(FIXTURES / "picklestorage.pkl", "r") as storage:
        assert list(storage.keys()) == described["keys_order"]
        for key, value in described["upstream_read"].items():
            assert_same_tree(storage[key], decode(value), key)
    assert described["upstream_read"]["dup"]["value"] == [100, 101, 102]  # the last record


def test_appends_to_the_file_corelay_1_0_0_wrote(tmp_path: Path) -> None:
    described = fixture_description()["files"]["picklestorage.pkl"]
    path = tmp_path / "upstream.pkl"
    shutil.copyfile(FIXTURES / "picklestorage.pkl", path)
    original = path.read_bytes()
    with _open_quietly(path, "a") as storage:
        storage["dup"] = np.arange(2)
        storage["added"] = {"x": 1}
    assert path.read_bytes().startswith(original)
    with _open_quietly(path, "r") as storage:
        assert list(storage.keys()) == [*described["keys_order"], "added"]
        assert_same_tree(storage["dup"], np.arange(2))
        assert_same_tree(storage["array"], decode(described["upstream_read"]["array"]))
        assert_same_tree(storage["added"], {"x": 1})


_UPSTREAM_READER = """
import json, pickle, sys
from corelay.io.storage import PickleStorage

storage = PickleStorage(sys.argv[1], mode="r")
keys = list(storage.keys())
values = {key: storage.at(data_key=key).read() for key in keys}
with open(sys.argv[2], "wb") as out:
    pickle.dump(values, out, protocol=5)  # 4 would turn big-endian arrays native
print(json.dumps(keys))
"""


def test_corelay_1_0_0_reads_our_files(tmp_path: Path) -> None:
    path = tmp_path / "ours.pkl"
    cases = dict(TREE_CASES)
    with PickleStorage(path, "w") as storage:
        storage["rewritten"] = "old"
        for case_id, tree in TREE_CASES:
            storage[case_id] = tree
        storage["rewritten"] = np.arange(3)
    expected = {"rewritten": np.arange(3), **cases}
    output = tmp_path / "read-by-upstream.pkl"
    keys = run_upstream(_UPSTREAM_READER, str(path), str(output))
    assert keys == ["rewritten", *cases]
    with open(output, "rb") as file:
        read: dict[str, Any] = pickle.load(file)  # written by our own subprocess: trusted
    assert list(read) == keys
    for key, value in read.items():
        assert_same_tree(_ordered(value), expected[key], key)


@settings(max_examples=200, deadline=None)
@given(
    damage=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_damaged_files_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, damage: list[tuple[int, int]]
) -> None:
    """Random bytes overwritten: opening and reading work, or fail with a pickle error."""
    content = bytearray((FIXTURES / "picklestorage.pkl").read_bytes())
    for position, value in damage:
        content[position % len(content)] = value
    path = tmp_path_factory.mktemp("damaged") / "f.pkl"
    path.write_bytes(bytes(content))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a torn tail is one possible outcome
        try:
            with PickleStorage(path, "r") as storage:
                for key in storage.keys():  # noqa: SIM118 - keys() is what is tested
                    with contextlib.suppress(NoDataSource):
                        storage[key]
        except pickle.UnpicklingError:
            pass


class _CraftedDType:
    def __init__(self, state: tuple[object, ...] | None, name: str = "f8") -> None:
        self.state = state
        self.name = name

    def __reduce__(self) -> tuple[object, ...]:
        if self.state is None:  # no BUILD: the dtype as NumPy names it
            return (np.dtype, (self.name, False, True))
        return (np.dtype, (self.name, False, True), self.state)


class _CraftedArray:
    def __init__(self, state: tuple[object, ...]) -> None:
        self.state = state

    def __reduce__(self) -> tuple[object, ...]:
        reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
        return (reconstruct, (np.ndarray, (0,), b"b"), self.state)


_CRAFTED: list[tuple[str, object]] = [
    ("dtype-with-fields", _CraftedDType((3, "<", None, ("a",), {"a": (1, 0)}, 8, 1, 16))),
    ("dtype-bad-order", _CraftedDType((3, "?", None, None, None, -1, -1, 0))),
    ("array-short-data", _CraftedArray((1, (10**6,), np.dtype("f8"), False, b"tiny"))),
    ("array-negative-shape", _CraftedArray((1, (-1,), np.dtype("f8"), False, b""))),
    ("array-object-data", _CraftedArray((1, (1,), np.dtype("f8"), False, [1.0]))),
    ("array-huge-dimension", _CraftedArray((1, (0, 2**70), np.dtype("f8"), False, b""))),
    ("array-65-dimensions", _CraftedArray((1, (0,) * 65, np.dtype("f8"), False, b""))),
    (
        "dtype-huge-string",
        _CraftedArray(
            (1, (0,), _CraftedDType((3, "|", None, None, None, 2**40, 1, 0), "S1"), False, b"")
        ),
    ),
]


@pytest.mark.parametrize("crafted", [c for _, c in _CRAFTED], ids=[i for i, _ in _CRAFTED])
def test_crafted_numpy_states_never_reach_numpy(tmp_path: Path, crafted: object) -> None:
    path = tmp_path / "crafted.pkl"
    path.write_bytes(pickle.dumps({"data": [crafted], "key": "k"}, protocol=4))
    with PickleStorage(path, "r") as storage, pytest.raises(_pickle.CorruptRecordError):
        storage["k"]


def test_an_object_array_is_refused_as_unsafe_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "crafted.pkl"
    crafted = _CraftedArray((1, (1,), np.dtype("O"), False, b"\x00" * 8))
    path.write_bytes(pickle.dumps({"data": [crafted], "key": "k"}, protocol=4))
    with PickleStorage(path, "r") as storage:
        with pytest.raises(_pickle.RefusedValueError, match=r"data\[0\]: refused an object ar"):
            storage["k"]
        assert not issubclass(_pickle.RefusedValueError, _pickle.CorruptRecordError)


# -------------------------------------------------- plain values of corelay 1.0.0 pickle files


def _plain_values() -> dict[str, Any]:
    """What ``tests/fixtures/upstream/make_pickle_values.py`` wrote, as this library reads it."""
    return {
        "int_keys": OrderedDict([(0, np.arange(3)), (1, "one"), (2, 2.5)]),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a", "b"}),
        "nested": OrderedDict(
            [("counts", OrderedDict([(0, 5), (7, 1)])), ("labels", {"x", "y"}), ("pair", (1, {2}))]
        ),
        "other_keys": OrderedDict(
            [((0, 1), "tuple"), (1.5, "float"), (None, "none"), (b"raw", "bytes")]
        ),
        "numpy_keys": OrderedDict([(np.int64(3), "three"), (np.float32(0.5), "half")]),
        "after": np.arange(4),
    }


def _assert_same_plain(value: Any, expected: Any, where: str) -> None:
    assert type(value) is type(expected), where
    if isinstance(expected, dict):
        pairs = list(cast("dict[object, object]", value).items())
        expected_pairs = list(cast("dict[object, object]", expected).items())
        assert [type(key) for key, _ in pairs] == [type(key) for key, _ in expected_pairs], where
        assert [key for key, _ in pairs] == [key for key, _ in expected_pairs], where
        for (key, item), (_, expected_item) in zip(pairs, expected_pairs, strict=True):
            _assert_same_plain(item, expected_item, f"{where}[{key!r}]")
    elif isinstance(expected, tuple):
        items = cast("tuple[object, ...]", value)
        expected_items = cast("tuple[object, ...]", expected)
        for index, (item, expected_item) in enumerate(zip(items, expected_items, strict=True)):
            _assert_same_plain(item, expected_item, f"{where}[{index}]")
    elif isinstance(expected, np.ndarray):
        assert_same_tree(value, expected, where)
    else:
        assert value == expected, where


def test_reads_plain_values_of_corelay_1_0_0_files() -> None:
    with _open_quietly(FIXTURES / "picklestorage_values.pkl", "r") as storage:
        assert list(storage.keys()) == [*list(_plain_values())[:-1], "object_array", "after"]
        for key, expected in _plain_values().items():
            _assert_same_plain(storage[key], expected, key)


def test_object_arrays_of_corelay_1_0_0_files_are_refused_as_unsafe() -> None:
    with _open_quietly(FIXTURES / "picklestorage_values.pkl", "r") as storage:
        with pytest.raises(_pickle.RefusedValueError) as caught:
            storage["object_array"]
        message = str(caught.value)
        assert "refused an object array" in message
        assert "safely" in message
        assert "picklestorage_values.pkl" in message
        assert not isinstance(caught.value, _pickle.CorruptRecordError)
        assert_same_tree(storage["after"], np.arange(4))  # the records after it still read


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({frozenset({1}): 1}, "dict key frozenset({1}) of type frozenset"),
        ({((1,),): 1}, "a dict key is a tuple within a tuple"),
        ({1: 1, "a/b": 2}, "invalid dict key"),
        ({b"x": bytearray(b"y")}, "unsupported type bytearray"),
    ],
    ids=["frozenset-key", "nested-tuple-key", "bad-str-key", "bytearray"],
)
def test_plain_values_beyond_these_are_refused(tmp_path: Path, data: Any, problem: str) -> None:
    path = tmp_path / "store.pkl"
    path.write_bytes(_record("k", data, protocol=5))
    with (
        PickleStorage(path, "r") as storage,
        pytest.raises(_pickle.CorruptRecordError, match=re.escape(problem)),
    ):
        storage["k"]


_DTYPE_NAMES = ["f8", "i4", "u1", "b1", "c16", "S1", "U1", "O8", "V8", "M8", "08", "f2"]


@settings(max_examples=int(os.environ.get("CORELAY_PICKLE_FUZZ_EXAMPLES", "150")), deadline=None)
@given(
    shape=st.one_of(
        st.lists(st.integers(-2, 2**70) | st.booleans(), max_size=70).map(tuple),
        st.none(),
        st.integers(),
    ),
    name=st.sampled_from(_DTYPE_NAMES),
    state=st.one_of(
        st.none(),
        st.tuples(
            st.integers(0, 4),
            st.sampled_from(["<", ">", "|", "=", "?"]),
            st.none(),
            st.none(),
            st.none(),
            st.integers(-8, 2**42),
            st.integers(-1, 16),
            st.integers(0, 64),
        ),
    ),
    data=st.binary(max_size=64) | st.none(),
    fortran=st.booleans(),
)
def test_crafted_array_states_give_an_array_or_corrupt_record_error(
    tmp_path_factory: pytest.TempPathFactory,
    shape: object,
    name: str,
    state: tuple[object, ...] | None,
    data: bytes | None,
    fortran: bool,
) -> None:
    crafted = _CraftedArray((1, shape, _CraftedDType(state, name), fortran, data))
    path = tmp_path_factory.mktemp("crafted") / "crafted.pkl"
    path.write_bytes(pickle.dumps({"data": crafted, "key": "k"}, protocol=4))
    with PickleStorage(path, "r") as storage:
        try:
            value = storage["k"]
        except (_pickle.CorruptRecordError, _pickle.RefusedValueError):
            return
    assert isinstance(value, np.ndarray)
    assert value.nbytes == len(data or b"")


def test_a_crafted_array_state_that_is_sound_reads_back(tmp_path: Path) -> None:
    crafted = _CraftedArray((1, (2, 1), _CraftedDType(None, "i4"), True, b"\x01\0\0\0\x02\0\0\0"))
    path = tmp_path / "crafted.pkl"
    path.write_bytes(pickle.dumps({"data": crafted, "key": "k"}, protocol=4))
    with PickleStorage(path, "r") as storage:
        assert_same_tree(storage["k"], np.array([[1], [2]], dtype=np.int32))


def test_validate_lists_the_plain_values_and_the_object_array() -> None:
    problems = dict(find_problems(describe_file(FIXTURES / "picklestorage_values.pkl")))
    assert "refused an object array" in problems["object_array"]
    assert "keys must be str" in problems["int_keys[0]"]
    assert problems["set"].startswith("unsupported type set")
    assert not any(path.startswith("after") for path in problems)
