"""PickleStorage under crafted records: bounded time and memory, documented errors only."""

import contextlib
import os
import pickle
import struct
import time
import tracemalloc
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corelay.cli import main
from corelay.io import _pickle
from corelay.io.describe import NotAStorageFileError, describe_file, find_problems
from corelay.io.storage import NoDataSource, PickleStorage
from tests.cases import assert_same_tree
from tests.memory import traced_peak

# ---------------------------------------------------------------------------- record builders


def _text(value: str) -> bytes:
    encoded = value.encode()
    return b"\x8c" + bytes([len(encoded)]) + encoded  # SHORT_BINUNICODE


def _record_of(data_opcodes: bytes, key: str = "k") -> bytes:
    """``{'data': <data_opcodes>, 'key': key}``, written opcode by opcode (protocol 4)."""
    return b"\x80\x04}(" + _text("data") + data_opcodes + _text("key") + _text(key) + b"u."


def _tuple_dag(depth: int) -> bytes:
    """A tuple holding the previous one twice, ``depth`` times: 2**depth leaves as a tree."""
    opcodes = b")\x94"  # EMPTY_TUPLE, MEMOIZE (memo 0)
    for index in range(depth):
        # BINGET the tuple on the stack, TUPLE2 (the tuple twice), MEMOIZE
        opcodes += b"h" + bytes([index]) + b"\x86\x94"
    return opcodes


def _list_dag(depth: int) -> bytes:
    """Lists holding the previous list twice, through LONG_BINGET."""
    opcodes = b"]\x94"  # EMPTY_LIST, MEMOIZE
    for index in range(depth):
        get = b"j" + struct.pack("<I", index)
        opcodes += b"0](" + get + get + b"e\x94"  # POP, EMPTY_LIST, MARK, GET, GET, APPENDS...
    return opcodes


def _nested_dicts(depth: int) -> bytes:
    """``{'a': {'a': ... None}}``, ``depth`` dicts deep, without recursion in the pickler."""
    return (b"}" + _text("a")) * depth + b"N" + b"s" * depth


def _write(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


def _nested_depth(value: object) -> int:
    depth = 0
    while isinstance(value, dict):
        depth += 1
        value = cast("dict[str, object]", value)["a"]
    assert value is None
    return depth


def _load_unchecked(path: Path, key: str) -> object:
    """What ``corelay-io inspect`` loads: the record's value, not checked to be a stored tree."""
    records = _pickle.RecordFile(path, "r")
    try:
        return records.load(key, checked=False)
    finally:
        records.file.close()


# ------------------------------------------------------------------------ shared structure


@pytest.mark.parametrize("builder", [_tuple_dag, _list_dag], ids=["tuples", "lists"])
@pytest.mark.parametrize("depth", [24, 200])
def test_shared_structure_is_refused_within_seconds(
    tmp_path: Path, builder: Any, depth: int
) -> None:
    path = _write(tmp_path / "dag.pkl", _record_of(builder(depth)))
    start = time.monotonic()
    tracemalloc.start()
    try:
        with (
            PickleStorage(path, "r") as storage,
            pytest.raises(_pickle.CorruptRecordError, match="shared structure"),
        ):
            storage["k"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # About 0.3 s alone and 2 s on a loaded machine under tracemalloc; expanded, it would take
    # hours: the bound tells the two apart without failing on a busy machine.
    assert time.monotonic() - start < 30
    assert peak < 64 << 20


def test_the_111_byte_dag_is_refused(tmp_path: Path) -> None:
    raw = _record_of(_tuple_dag(24))
    assert len(raw) < 130
    path = _write(tmp_path / "dag.pkl", raw)
    with PickleStorage(path, "r") as storage, pytest.raises(_pickle.CorruptRecordError):
        storage["k"]


def test_inspect_and_validate_report_shared_structure_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dag.pkl"
    path.write_bytes(_record_of(pickle.dumps([1])[2:-1], "fine") + _record_of(_tuple_dag(40)))
    start = time.monotonic()
    description = describe_file(path)
    problems = dict(find_problems(description))
    assert "shared structure" in problems["k"]
    assert "fine" not in problems
    assert main(["inspect", str(path)]) == 0
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "shared structure" in out
    assert time.monotonic() - start < 10


def test_a_container_reused_a_few_times_reads_back_as_copies(tmp_path: Path) -> None:
    # corelay 1.0.0 pickles a tree holding one list twice with a memo reference.
    shared = [1, 2, 3]
    array = np.arange(3)
    path = _write(
        tmp_path / "shared.pkl",
        pickle.dumps({"data": {"a": shared, "b": shared, "x": array, "y": array}, "key": "k"}),
    )
    with PickleStorage(path, "r") as storage:
        value = storage["k"]
    assert_same_tree(value, {"a": [1, 2, 3], "b": [1, 2, 3], "x": array, "y": array})
    assert value["a"] is not value["b"]  # a tree: changing one leaves the other
    assert value["x"] is value["y"]  # an array held twice is made once, as pickle does


@pytest.mark.parametrize(
    "opcodes",
    [
        b"]\x94h\x00a",  # a list appended to itself: EMPTY_LIST MEMOIZE BINGET APPEND
        b"}\x94" + _text("a") + b"h\x00s",  # a dict holding itself
        b"]\x94](h\x00ea",  # a list holding a list holding the first
    ],
    ids=["list", "dict", "two-lists"],
)
def test_a_container_holding_itself_is_refused(tmp_path: Path, opcodes: bytes) -> None:
    path = _write(tmp_path / "cycle.pkl", _record_of(opcodes))
    with PickleStorage(path, "r") as storage:
        with pytest.raises(_pickle.CorruptRecordError, match="contains itself"):
            storage["k"]
        with pytest.raises(_pickle.CorruptRecordError, match="contains itself"):
            _load_unchecked(path, "k")
    assert "contains itself" in dict(find_problems(describe_file(path)))["k"]


# ----------------------------------------------------------------------------- memory


def _peak_of(action: Any) -> int:
    with traced_peak() as peak:
        action()
    return peak.bytes


def test_a_memo_index_beyond_the_record_is_refused(tmp_path: Path) -> None:
    # 26 bytes that make a plain unpickler allocate a memo of 2**28 entries (2 GiB).
    raw = b"\x80\x04}r" + struct.pack("<I", 1 << 28) + b"(" + _text("data") + b"N"
    raw += _text("key") + _text("k") + b"u."
    assert len(raw) == 26
    path = _write(tmp_path / "memo.pkl", raw)

    def opening() -> None:
        with pytest.raises(_pickle.CorruptRecordError, match="memo index 268435456"):
            PickleStorage(path, "r")

    assert _peak_of(opening) < 16 << 20


def test_loading_walks_the_record_again(tmp_path: Path) -> None:
    """Bytes changed after opening are checked when read, before the unpickler sees them."""
    path = tmp_path / "changed.pkl"
    with PickleStorage(path, "w") as storage:
        storage["k"] = "x" * 40
    good_size = path.stat().st_size
    hostile = b"\x80\x04}r" + struct.pack("<I", 1 << 28) + b"(" + _text("data") + b"N"
    hostile += _text("key") + _text("k") + b"u."
    with PickleStorage(path, "r") as storage:
        with path.open("r+b") as file:  # the same file, changed in place by someone else
            file.write(hostile.ljust(good_size, b"."))

        def reading() -> None:
            with pytest.raises(_pickle.CorruptRecordError, match="memo index"):
                storage["k"]

        assert _peak_of(reading) < 16 << 20


@pytest.mark.parametrize(
    "opcodes",
    [
        b"\x8a\xff",  # LONG1 longer than the file
        b"\x8b" + struct.pack("<i", 0x7FFFFFFF),  # LONG4 of 2 GiB
        b"\x8e" + struct.pack("<Q", 1 << 40),  # BINBYTES8 of 1 TiB
        b"\x96" + struct.pack("<Q", 1 << 40),  # BYTEARRAY8 of 1 TiB
        b"\x8d" + struct.pack("<Q", 1 << 40),  # BINUNICODE8 of 1 TiB
        b"X" + struct.pack("<I", 1 << 31),  # BINUNICODE of 2 GiB
    ],
    ids=["long1", "long4", "binbytes8", "bytearray8", "binunicode8", "binunicode"],
)
def test_declared_lengths_beyond_the_file_allocate_nothing(tmp_path: Path, opcodes: bytes) -> None:
    good = _record_of(b"N", "good")
    path = _write(tmp_path / "long.pkl", good + _record_of(opcodes) + b"\x00" * 64)

    def opening() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with PickleStorage(path, "r") as storage:
                assert list(storage.keys()) == ["good"]
        assert any("torn record" in str(warning.message) for warning in caught)

    assert _peak_of(opening) < 16 << 20


def test_a_frame_beyond_the_file_allocates_nothing(tmp_path: Path) -> None:
    good = _record_of(b"N", "good")
    hostile = b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + _record_of(b"N")[2:]
    path = _write(tmp_path / "frame.pkl", good + hostile)

    def opening() -> None:
        with pytest.warns(RuntimeWarning, match="torn record"):
            PickleStorage(path, "r").close()

    assert _peak_of(opening) < 16 << 20


# ----------------------------------------------------------------------------- deep trees


@pytest.mark.parametrize("depth", [1_000, 5_000, 20_000])
def test_deep_trees_read_back(tmp_path: Path, depth: int) -> None:
    path = _write(tmp_path / "deep.pkl", _record_of(_nested_dicts(depth)))
    with PickleStorage(path, "r") as storage:
        value: object = storage["k"]
        assert type(value) is OrderedDict  # every dict of the tree, as the depth walk checks
        assert _nested_depth(storage["k"]) == depth
        unchecked = _load_unchecked(path, "k")
        assert _nested_depth(unchecked) == depth


def test_deep_trees_report_their_path(tmp_path: Path) -> None:
    opcodes = b"](" * 3 + b"c" + b"numpy\ndtype\n" + b"e" * 3
    path = _write(tmp_path / "deep.pkl", _record_of(opcodes))
    with (
        PickleStorage(path, "r") as storage,
        pytest.raises(_pickle.CorruptRecordError, match=r"data\[0\]\[0\]\[0\]: a bare"),
    ):
        storage["k"]


def test_inspect_and_validate_report_records_deeper_than_they_describe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.pkl"
    path.write_bytes(_record_of(_nested_dicts(100), "shallow") + _record_of(_nested_dicts(5_000)))
    problems = dict(find_problems(describe_file(path)))
    assert list(problems) == ["k"]
    assert "containers nested deeper than 100" in problems["k"]
    assert main(["inspect", "--json", str(path)]) == 0
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "nested deeper than 100" in captured.out


def test_a_maximum_depth_counts_containers_from_the_root() -> None:
    tree: object = None
    for _ in range(3):
        tree = [tree]
    assert _pickle.read_form(tree, max_depth=3) == [[[None]]]
    with pytest.raises(_pickle.CorruptRecordError, match=r"data\[0\]\[0\]: containers nested"):
        _pickle.read_form(tree, max_depth=2)


@pytest.mark.parametrize("depth", [50, 99, 300])
def test_a_deep_tree_written_reads_back(tmp_path: Path, depth: int) -> None:
    """What ``write`` accepts, ``read`` returns (a documented maximum depth may refuse it)."""
    tree: Any = None
    for _ in range(depth):
        tree = {"a": tree}
    path = tmp_path / "deep.pkl"
    with PickleStorage(path, "w") as storage:
        try:
            storage["k"] = tree
        except ValueError as error:  # validation's maximum depth, named in the message
            assert "deep" in str(error) or "depth" in str(error).lower()
            return
    with PickleStorage(path, "r") as storage:
        assert _nested_depth(storage["k"]) == depth


# ------------------------------------------------------------------------- state of globals


@pytest.mark.parametrize(
    "name",
    [b"numpy\nndarray\n", b"numpy._core.numeric\n_frombuffer\n", b"_codecs\nencode\n"],
    ids=["ndarray", "frombuffer", "codecs"],
)
def test_build_on_a_global_changes_nothing(tmp_path: Path, name: bytes) -> None:
    # BUILD with (None, {'marker': 1}) sets an attribute of the object it is given, with
    # {'marker': 1} an item of its __dict__: either would change it for every later load.
    slot_state = b"N}" + _text("marker") + b"K\x01s\x86"  # (None, {'marker': 1})
    dict_state = b"}" + _text("marker") + b"K\x01s"  # {'marker': 1}
    for build in (slot_state, dict_state):
        path = _write(tmp_path / "build.pkl", _record_of(b"c" + name + build + b"b"))
        with PickleStorage(path, "r") as storage, pytest.raises(_pickle.CorruptRecordError):
            storage["k"]
    module, global_name = name.decode().split()
    resolved = _pickle.ALLOWED_GLOBALS[module, global_name]
    assert not hasattr(resolved, "marker")
    # The allowed functions still work for honest records.
    with PickleStorage(tmp_path / "ok.pkl", "w") as storage:
        storage["a"] = np.arange(3)
    with PickleStorage(tmp_path / "ok.pkl", "r") as storage:
        assert_same_tree(storage["a"], np.arange(3))


# ------------------------------------------------------------------------------ fuzzing

_FUZZ_EXAMPLES = int(os.environ.get("CORELAY_PICKLE_FUZZ_EXAMPLES", "150"))


def _seed_records() -> list[bytes]:
    """Records of every shape the reader meets: ours, corelay 1.0.0's, and crafted ones."""
    tree = {"a": np.arange(6, dtype=">i4").reshape(2, 3), "b": [1.5, "x", b"y"], "c": (None, 1j)}
    plain = {"ints": {0: np.float32(1.5), 1: "one"}, "set": {1, 2}, "frozen": frozenset("ab")}
    records = [
        pickle.dumps({"data": tree, "key": f"p{protocol}"}, protocol=protocol)
        for protocol in (0, 2, 4, 5)
    ]
    records.append(pickle.dumps({"data": plain, "key": "plain"}, protocol=4))
    records.append(_record_of(_tuple_dag(12), "dag"))
    records.append(_record_of(_nested_dicts(50), "deep"))
    records.append(_record_of(b"]\x94h\x00a", "cycle"))
    return records


# Opcodes worth splicing in: memo traffic, big declared sizes, stack shuffles, calls.
_SPLICES = [
    b"r" + struct.pack("<I", 1 << 28),  # LONG_BINPUT 2**28
    b"j" + struct.pack("<I", 0),  # LONG_BINGET 0
    b"h\x00",  # BINGET 0
    b"h\x01",  # BINGET 1
    b"\x94",  # MEMOIZE
    b"\x95" + struct.pack("<Q", 1 << 40),  # FRAME 2**40
    b"\x8e" + struct.pack("<Q", 1 << 40),  # BINBYTES8 2**40
    b"\x8b" + struct.pack("<i", 0x7FFFFFFF),  # LONG4
    b"2",  # DUP
    b"0",  # POP
    b"\x86",  # TUPLE2
    b"R",  # REDUCE
    b"b",  # BUILD
    b"a",  # APPEND
    b"s",  # SETITEM
    b"(",  # MARK
    b"e",  # APPENDS
    b"\x90",  # ADDITEMS
    b"cnumpy\ndtype\n",  # GLOBAL numpy dtype
    b"c_codecs\nencode\n",  # GLOBAL _codecs encode
    b"cbuiltins\nset\n",  # GLOBAL builtins set
]


@st.composite
def _mutated_files(draw: st.DrawFn) -> bytes:
    seeds = _seed_records()
    chosen = draw(st.lists(st.sampled_from(range(len(seeds))), min_size=1, max_size=3))
    content = bytearray(b"".join(seeds[index] for index in chosen))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(content)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "splice", "truncate"]))
        if action == "flip" and position < len(content):
            content[position] = draw(st.integers(0, 255))
        elif action == "insert":
            content[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del content[position : position + draw(st.integers(1, 8))]
        elif action == "splice":
            content[position:position] = draw(st.sampled_from(_SPLICES))
        elif action == "truncate":
            del content[position:]
    return bytes(content)


@settings(
    max_examples=_FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(raw=_mutated_files())
def test_mutated_records_give_a_value_or_a_documented_error(tmp_path: Path, raw: bytes) -> None:
    """Every outcome of opening, reading and describing is a value or a documented error."""
    path = tmp_path / "fuzzed.pkl"
    path.write_bytes(raw)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a torn tail is one possible outcome
        try:
            with PickleStorage(path, "r") as storage:
                for key in list(storage.keys()):
                    with contextlib.suppress(pickle.UnpicklingError, NoDataSource):
                        storage[key]
                    with contextlib.suppress(pickle.UnpicklingError):
                        _load_unchecked(path, key)
        except pickle.UnpicklingError:
            pass
        with contextlib.suppress(NotAStorageFileError):
            find_problems(describe_file(path))
    assert time.monotonic() - start < 10
