"""Tests of corelay.io.hashing.ext_hash: exactness, layout independence, determinism."""

from __future__ import annotations

import collections
import importlib.abc
import importlib.machinery
import os
import pathlib
import subprocess
import sys
import threading
import tracemalloc
import types
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corelay.io import _hash_records, hashing
from corelay.io.hashing import ext_hash

Array = np.ndarray[Any, np.dtype[Any]]
MiB = 1024 * 1024


def assert_all_distinct(values: Sequence[object]) -> None:
    digests = [ext_hash(v) for v in values]
    seen: dict[str, int] = {}
    for index, digest in enumerate(digests):
        assert digest not in seen, f"{values[seen[digest]]!r} and {values[index]!r} collide"
        seen[digest] = index


# --- basic shape of the result -------------------------------------------------------------


def test_digest_is_32_lowercase_hex_and_stable_within_process() -> None:
    tree = {"a": [1, 2.0, "x"], "b": np.arange(5)}
    digest = ext_hash(tree)
    assert len(digest) == 32
    assert set(digest) <= set("0123456789abcdef")
    assert ext_hash(tree) == digest
    assert ext_hash({"b": np.arange(5), "a": [1, 2.0, "x"]}) == digest


# --- arrays: any bit / dtype / shape difference is a different key ---------------------------


def test_float64_last_bit_difference() -> None:
    a = np.random.default_rng(1).standard_normal(1000)
    for index in (0, 499, 999):
        b = a.copy()
        b[index] = np.nextafter(b[index], np.inf)
        assert b[index] != a[index]
        assert ext_hash(a) != ext_hash(b)
    assert ext_hash(1.0) != ext_hash(float(np.nextafter(1.0, 2.0)))


def test_signed_zero_and_nan_payloads_are_distinct() -> None:
    assert ext_hash(0.0) != ext_hash(-0.0)
    assert ext_hash(np.array([0.0])) != ext_hash(np.array([-0.0]))
    quiet = np.array([np.nan])
    payload = quiet.view(np.uint64).copy()
    payload[0] ^= 1
    assert np.isnan(payload.view(np.float64)[0])
    assert ext_hash(quiet) != ext_hash(payload.view(np.float64))


def test_dtype_differences_are_distinct() -> None:
    values = [1, 2, 3, 4, 5, 6]
    assert_all_distinct(
        [
            np.array(values, dtype=np.int32),
            np.array(values, dtype=np.int64),
            np.array(values, dtype=np.uint32),
            np.array(values, dtype=np.float32),
            np.array(values, dtype=np.float64),
            np.array(values, dtype=np.complex128),
        ]
    )


def test_same_bytes_different_dtype_are_distinct() -> None:
    a = np.random.default_rng(2).standard_normal(8)
    assert_all_distinct(
        [a, a.view(np.int64), a.view(np.uint64), a.view(np.uint8), a.view(np.complex128)]
    )
    assert ext_hash(np.array([-1], dtype=np.int8)) != ext_hash(np.array([255], dtype=np.uint8))


def test_byte_order_is_part_of_the_key() -> None:
    little = np.arange(4, dtype="<f8")
    big = little.astype(">f8")
    assert np.array_equal(little, big)
    assert ext_hash(little) != ext_hash(big)
    assert ext_hash(big) == ext_hash(big.copy())


def test_shape_differences_are_distinct() -> None:
    a = np.arange(6, dtype=np.int64)
    assert_all_distinct(
        [a, a.reshape(2, 3), a.reshape(3, 2), a.reshape(1, 6), a.reshape(6, 1), a.reshape(1, 2, 3)]
    )
    assert_all_distinct(
        [np.zeros((0,)), np.zeros((0, 3)), np.zeros((3, 0)), np.zeros((0, 0)), np.zeros(())]
    )


def test_datetime_and_string_arrays() -> None:
    days = np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]")
    assert ext_hash(days) == ext_hash(days.copy())
    assert ext_hash(days) != ext_hash(days.astype("datetime64[s]"))
    assert ext_hash(days) != ext_hash(days.view(np.int64))
    assert ext_hash(np.array(["ab", "c"])) != ext_hash(np.array(["a", "bc"]))
    assert ext_hash(np.array(["ab"], dtype="U2")) != ext_hash(np.array(["ab"], dtype="U3"))
    assert ext_hash(np.array([b"ab"])) != ext_hash(np.array(["ab"]))


# --- arrays: layout independence ------------------------------------------------------------


def test_layout_independence() -> None:
    base = np.random.default_rng(3).standard_normal((6, 8, 5))
    views: list[Array] = [
        base[:, ::2, :],
        base[::-1],
        base[:, :, ::-1],
        base[::-2, 1::3, ::2],
        base.transpose(2, 0, 1),
        np.asfortranarray(base),
        base[:, 3, :],
        base[2:4],
    ]
    for view in views:
        contiguous = np.ascontiguousarray(view)
        assert contiguous.flags.c_contiguous
        assert ext_hash(view) == ext_hash(contiguous)
        assert ext_hash(view) == ext_hash(view.copy(order="F"))


@pytest.mark.parametrize("chunk_bytes", [1, 8, 40, 1000])
def test_chunked_path_matches_contiguous_copy(
    monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    base = np.arange(4 * 50 * 6, dtype=np.float64).reshape(4, 50, 6)
    cases: list[Array] = [
        np.asfortranarray(base),  # rows (2400 B) larger than the chunk -> recursion
        base[:, ::3, :],
        base[::-1, :, ::-1],
        base[:, :, 2],
        base.reshape(-1)[::7],  # 1-D strided, many chunks
    ]
    expected = [ext_hash(np.ascontiguousarray(c)) for c in cases]
    monkeypatch.setattr(_hash_records, "CHUNK_BYTES", chunk_bytes)
    assert [ext_hash(c) for c in cases] == expected


def test_non_contiguous_view_memory_is_bounded_by_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hash_records, "CHUNK_BYTES", 1 * MiB)
    fortran = np.asfortranarray(np.ones((2048, 2048)))  # 32 MiB, not C-contiguous
    strided = np.ones((4096, 2048))[:, ::2]  # 32 MiB view of a 64 MiB array
    long_rows = np.asfortranarray(np.ones((4, 1024 * 1024)))  # 8 MiB rows > one chunk
    for array in (fortran, strided, long_rows):
        assert not array.flags.c_contiguous
        tracemalloc.start()
        try:
            ext_hash(array)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 3 * MiB, f"peak {peak} B: more than a chunk was copied"


def test_c_contiguous_array_is_hashed_without_copy() -> None:
    array = np.ones(64 * MiB // 8)  # 64 MiB
    ext_hash(array)  # warm up lazily allocated module state
    tracemalloc.start()
    try:
        digest = ext_hash(array)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"peak {peak} B: the array was copied"
    big_endian = array.astype(">f8")
    tracemalloc.start()
    try:
        ext_hash(big_endian)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"peak {peak} B: the non-native array was copied"
    assert digest != ext_hash(big_endian)


def test_memmap_hashes_like_ndarray(tmp_path: pathlib.Path) -> None:
    data = np.arange(100, dtype=np.int32).reshape(10, 10)
    mm = np.memmap(tmp_path / "a.bin", dtype=np.int32, mode="w+", shape=(10, 10))
    mm[:] = data
    assert ext_hash(mm) == ext_hash(data)
    assert ext_hash(mm[:, ::2]) == ext_hash(data[:, ::2].copy())


# --- hypothesis properties ------------------------------------------------------------------

_dtypes = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
)
_arrays = _dtypes.flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0))
)


@settings(max_examples=200, deadline=None)
@given(_arrays)
def test_property_equal_arrays_hash_equal(a: Array) -> None:
    digest = ext_hash(a)
    assert ext_hash(a.copy(order="F")) == digest
    assert ext_hash(a[::1]) == digest
    assert ext_hash(a[::-1][::-1]) == digest
    padded = np.empty((*a.shape[:-1], 2 * a.shape[-1]), dtype=a.dtype)[..., ::2]
    padded[...] = a
    assert not padded.flags.c_contiguous or padded.size <= 1
    assert ext_hash(padded) == digest


@settings(max_examples=200, deadline=None)
@given(_arrays.filter(lambda a: a.size > 0), st.data())
def test_property_one_element_difference_changes_hash(a: Array, data: st.DataObject) -> None:
    b = np.ascontiguousarray(a).copy()
    raw = b.reshape(-1).view(np.uint8)
    byte = data.draw(st.integers(0, raw.size - 1), label="byte")
    bit = 0 if a.dtype.kind == "b" else data.draw(st.integers(0, 7), label="bit")
    raw[byte] ^= np.uint8(1 << bit)
    assert ext_hash(a) != ext_hash(b)
    assert ext_hash(np.asfortranarray(a)) != ext_hash(np.asfortranarray(b))


# --- scalars, type tags and nesting ---------------------------------------------------------


def test_type_tags_distinguish_equal_looking_scalars() -> None:
    assert_all_distinct(
        [
            1,
            1.0,
            True,
            1 + 0j,
            np.int64(1),
            np.int32(1),
            np.float64(1.0),
            np.bool_(True),
            np.array(1),
            np.array([1]),
            "1",
            b"1",
            bytearray(b"1"),
            memoryview(b"1"),
            np.str_("1"),
            np.bytes_(b"1"),
            pathlib.PurePosixPath("1"),
            (1,),
            [1],
            {1},
            frozenset({1}),
            {1: None},
        ]
    )


def test_numpy_scalar_differs_from_zero_d_array_and_python_value() -> None:
    assert ext_hash(np.float64(1.5)) != ext_hash(np.array(1.5))
    assert ext_hash(np.float64(1.5)) != ext_hash(1.5)
    assert ext_hash(np.float64(1.5)) == ext_hash(np.array([1.5])[0])
    assert ext_hash(np.float32(1.5)) != ext_hash(np.float64(1.5))


def test_empty_and_falsy_values_are_distinct() -> None:
    empty: list[object] = [None, False, 0, 0.0, 0j, "", b"", bytearray(), (), [], {}, set()]
    empty += [frozenset[object](), [()]]
    assert_all_distinct(empty)


def test_integers_of_any_size_and_sign() -> None:
    ints = [0, 1, -1, 255, 256, -255, -256, 2**63 - 1, 2**63, 2**64, -(2**64), 10**100]
    assert_all_distinct(ints)
    assert ext_hash(2**200 + 1) == ext_hash(2**200 + 1)


def test_nesting_is_unambiguous() -> None:
    assert_all_distinct([((1, 2), 3), (1, (2, 3)), (1, 2, 3), ((1, 2, 3),)])
    lists: list[object] = [[[]], [], [[], []], [[[]]]]
    assert_all_distinct(lists)
    assert_all_distinct([("ab", "c"), ("a", "bc"), ("abc",), ("a", "b", "c")])
    assert_all_distinct([(b"ab", b"c"), (b"a", b"bc")])
    assert_all_distinct([{"a": (1, 2)}, {"a": 1, 2: None}, {("a", 1): 2}])
    assert_all_distinct(
        [(np.arange(2), np.arange(3)), (np.arange(3), np.arange(2)), (np.arange(5),)]
    )


def test_tuple_and_list_differ_but_each_is_ordered() -> None:
    assert ext_hash((1, 2)) != ext_hash([1, 2])
    assert ext_hash([1, 2]) != ext_hash([2, 1])
    assert ext_hash((1, 2)) == ext_hash((1, 2))


def test_dict_insertion_order_is_ignored() -> None:
    a = {"x": 1, "y": [1, 2], 3: "z", (1, 2): None, 2.5: np.arange(3)}
    b = dict(reversed(list(a.items())))
    assert list(a) != list(b)
    assert ext_hash(a) == ext_hash(b)
    assert ext_hash(collections.OrderedDict(a)) == ext_hash(a)
    assert ext_hash(collections.defaultdict(list, a)) == ext_hash(a)


def test_dict_contents_matter() -> None:
    assert_all_distinct(
        [
            {"a": 1, "b": 2},
            {"a": 2, "b": 1},
            {"a": 1},
            {"a": 1, "b": 2, "c": 3},
            {1: "a"},
            {1.0: "a"},
            {True: "a"},
            [("a", 1), ("b", 2)],
        ]
    )


def test_sets_are_canonical() -> None:
    words = [f"w{i}" for i in range(50)]
    assert ext_hash(set(words)) == ext_hash(set(reversed(words)))
    assert ext_hash(frozenset(words)) == ext_hash(frozenset(reversed(words)))
    assert ext_hash(set(words)) != ext_hash(frozenset(words))
    assert ext_hash({1, 2}) != ext_hash({1, 3})
    assert ext_hash({1, 2}) != ext_hash({1, 2, 3})
    assert ext_hash({frozenset({1}), frozenset({2})}) != ext_hash({frozenset({1, 2})})


def test_strings_and_bytes() -> None:
    assert ext_hash("é") != ext_hash("e\u0301")
    assert ext_hash("\ud800") != ext_hash("\udc00")  # lone surrogates are hashable
    assert ext_hash("é") != ext_hash("é".encode())
    assert ext_hash(b"ab") != ext_hash(bytearray(b"ab"))
    assert ext_hash(bytearray(b"ab")) == ext_hash(bytearray(b"ab"))


def test_memoryview_uses_format_shape_and_c_order_bytes() -> None:
    a = np.arange(12.0)
    strided = a.data[::2]
    assert not strided.c_contiguous
    assert ext_hash(strided) == ext_hash(a[::2].copy().data)
    assert ext_hash(a.data) != ext_hash(a.view(np.int64).data)
    assert ext_hash(a.data) != ext_hash(a.reshape(3, 4).data)
    assert ext_hash(memoryview(b"ab")) != ext_hash(b"ab")


def test_paths() -> None:
    assert ext_hash(pathlib.Path("a/b")) == ext_hash(pathlib.PurePosixPath("a/b"))
    assert ext_hash(pathlib.Path("a/b")) != ext_hash("a/b")
    assert ext_hash(pathlib.Path("a/b")) != ext_hash(pathlib.Path("a/c"))


# --- unsupported values ---------------------------------------------------------------------


def _generator() -> Iterator[int]:
    yield 1


def test_unsupported_type_error_names_type_and_path() -> None:
    with pytest.raises(TypeError) as info:
        ext_hash([0, 1, {"gen": _generator()}])
    message = str(info.value)
    assert message.startswith("ext_hash: data[2]['gen']: unsupported type generator: ")
    assert "None, bool, int" in message


@pytest.mark.parametrize(
    ("data", "path", "type_name"),
    [
        (_generator(), "data", "generator"),
        ({"k": (1, [2, {3: _generator()}])}, "data['k'][1][1][3]", "generator"),
        ({(1, _generator()): 2}, "data<key (1, <generator object _generator", "generator"),
        ([{_generator()}], "data[0]{<generator object _generator", "generator"),
        ([threading.Lock()], "data[0]", "_thread.lock"),
        ((types.SimpleNamespace(f=_generator()),), "data[0].<state>['f']", "generator"),
    ],
)
def test_unsupported_values_raise_type_error(data: object, path: str, type_name: str) -> None:
    with pytest.raises(TypeError) as info:
        ext_hash(data)
    message = str(info.value)
    assert message.startswith(f"ext_hash: {path}"), message
    assert "unsupported type" in message
    assert type_name in message


@pytest.mark.parametrize(
    "array",
    [
        np.array([1, "a", None], dtype=object),
        np.zeros(3, dtype=[("x", "<i4"), ("y", "<f8")]),
        np.zeros(3, dtype="V8"),
    ],
)
def test_object_and_structured_arrays_raise_type_error(array: Array) -> None:
    with pytest.raises(TypeError, match=r"^ext_hash: data\[1\]: unsupported NumPy dtype"):
        ext_hash([0, array])


def test_other_unsupported_numpy_values() -> None:
    structured = np.zeros(1, dtype=[("x", "<i4")])
    with pytest.raises(TypeError, match="unsupported NumPy dtype"):
        ext_hash(structured[0])  # np.void scalar
    string_dtype: Any = getattr(np.dtypes, "StringDType", None)
    if string_dtype is not None:
        with pytest.raises(TypeError, match="StringDType"):
            ext_hash(np.array(["a", "bb"], dtype=string_dtype()))
    if np.dtype(np.longdouble).itemsize > 8:
        with pytest.raises(TypeError, match="long double"):
            ext_hash(np.zeros(2, dtype=np.longdouble))


def test_self_referencing_container_raises_value_error() -> None:
    cycle: list[object] = [1]
    cycle.append(cycle)
    with pytest.raises(ValueError, match=r"^ext_hash: data\[1\]: container contains itself"):
        ext_hash(cycle)
    shared = [1, 2]
    assert ext_hash([shared, shared]) == ext_hash([[1, 2], [1, 2]])  # sharing is not a cycle


# --- torch (faked: the module is used only if already imported) -----------------------------


class _FakeTensor:
    def __init__(self, array: Array) -> None:
        self._array = array
        self.calls: list[str] = []

    def detach(self) -> _FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> _FakeTensor:
        self.calls.append("cpu")
        return self

    def numpy(self) -> Array:
        self.calls.append("numpy")
        return self._array


def test_torch_tensor_hashes_like_numpy_array(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_torch = types.ModuleType("torch")
    fake_torch.Tensor = _FakeTensor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    array = np.arange(12.0).reshape(3, 4)
    tensor = _FakeTensor(array)
    assert ext_hash({"t": tensor}) == ext_hash({"t": array})
    assert tensor.calls == ["detach", "cpu", "numpy"]
    assert ext_hash(_FakeTensor(array[:, ::2])) == ext_hash(array[:, ::2].copy())


def test_torch_is_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[str] = []

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(
            self,
            fullname: str,
            path: Sequence[str] | None,
            target: types.ModuleType | None = None,
        ) -> importlib.machinery.ModuleSpec | None:
            if fullname.split(".")[0] == "torch":
                attempts.append(fullname)
                raise ImportError("blocked by test")
            return None

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Blocker(), *sys.meta_path])
    tensor = _FakeTensor(np.arange(3))
    # Without torch it is an ordinary object, hashed through its reduction.
    assert ext_hash(tensor) != ext_hash(np.arange(3))
    assert tensor.calls == []
    ext_hash([1, np.arange(3)])
    assert attempts == []


# --- determinism across processes -----------------------------------------------------------

_TREE_CODE = """
import collections, pathlib
import numpy as np
words = [f"word-{i}" for i in range(40)]
tree = {
    "words": set(words),
    "frozen": frozenset(words[:10]),
    "nested": {w: {"len": len(w), "rev": w[::-1]} for w in words},
    "array": np.arange(60, dtype="<f8").reshape(3, 4, 5)[:, ::2, ::-1],
    "ints": np.arange(10, dtype="<i4"),
    "mixed": [None, True, 1, 1.5, 2j, "s", b"b", bytearray(b"ba"), (1, [2, (3,)])],
    "big": -(2**100),
    "path": pathlib.PurePosixPath("/tmp/x"),
    "od": collections.OrderedDict([("b", 1), ("a", 2)]),
    ("tuple", "key"): {1, 2.5, "three"},
}
"""

# Pinned digest of the tree above.  It only changes if the encoding changes, which must come
# with a bump of the format prefix in corelay.io.hashing (old cache keys become invalid).
_TREE_DIGEST = "3df0853e2d264ff7893eb5882f171612"


def _tree() -> object:
    namespace: dict[str, object] = {}
    exec(_TREE_CODE, namespace)
    return namespace["tree"]


def test_digest_is_identical_across_processes_and_hash_seeds() -> None:
    in_process = ext_hash(_tree())
    src_dir = pathlib.Path(hashing.__file__).resolve().parents[2]
    script = _TREE_CODE + "\nfrom corelay.io.hashing import ext_hash\nprint(ext_hash(tree))\n"
    outputs: list[str] = []
    for seed in ("0", "12345", "987654321"):
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = seed
        env["PYTHONPATH"] = os.pathsep.join([str(src_dir), env.get("PYTHONPATH", "")])
        completed = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        outputs.append(completed.stdout.strip())
    assert outputs == [in_process] * 3


def test_digest_is_pinned() -> None:
    assert ext_hash(_tree()) == _TREE_DIGEST
