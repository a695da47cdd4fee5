"""ext_hash of the kinds beyond plain trees: sparse, ndarray subclasses, records, dates, code."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import os
import pathlib
import subprocess
import sys
import types
from collections import namedtuple
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from corelay.io import hashing
from corelay.io.hashing import ext_hash

Array = np.ndarray[Any, np.dtype[Any]]

# np.matrix is pending deprecation, and scipy warns when an explicit zero is stored: both are
# what these tests do on purpose.
pytestmark = [
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::scipy.sparse.SparseEfficiencyWarning"),
]


def distinct(*values: object) -> None:
    digests = [ext_hash(value) for value in values]
    assert len(set(digests)) == len(digests), values


# --- scipy.sparse ---------------------------------------------------------------------------

FORMATS = ["csr", "csc", "coo", "bsr", "dia", "dok", "lil"]


def _as(matrix: Any, fmt: str) -> Any:
    """``matrix.asformat(fmt)`` for a format named at run time."""
    return matrix.asformat(fmt)


def _dense(seed: int = 0) -> Array:
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((6, 8))
    dense[rng.random((6, 8)) < 0.6] = 0.0
    return dense


def _unsorted_csr(dense: Array, *, array: bool = False) -> Any:
    """The CSR matrix of ``dense``, built with the indices of each row reversed."""
    indptr: list[int] = [0]
    indices: list[int] = []
    data: list[float] = []
    for row in dense:
        (columns,) = np.nonzero(row)
        indices.extend(columns[::-1].tolist())
        data.extend(row[columns[::-1]].tolist())
        indptr.append(len(indices))
    make = sp.csr_array if array else sp.csr_matrix
    return make((np.array(data), np.array(indices), np.array(indptr)), shape=dense.shape)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_sparse_every_format_hashes_its_values(fmt: str, kind: str) -> None:
    make = sp.csr_array if kind == "array" else sp.csr_matrix
    dense = _dense()
    matrix = _as(make(dense), fmt)
    assert ext_hash(matrix) == ext_hash(_as(make(dense.copy()), fmt))
    changed = dense.copy()
    changed[np.nonzero(changed)[0][0], np.nonzero(changed)[1][0]] += 1e-12
    moved = dense.copy()
    row, column = np.nonzero(moved)[0][0], np.nonzero(moved)[1][0]
    moved[row, (column + 1) % 8], moved[row, column] = moved[row, column], 0.0
    distinct(
        matrix,
        _as(make(changed), fmt),  # a value
        _as(make(moved), fmt),  # an index
        _as(make(np.pad(dense, ((0, 1), (0, 0)))), fmt),  # the shape
        _as(make(dense.astype(np.float32)), fmt),  # the dtype
    )


def test_sparse_unsorted_indices_hash_like_sorted() -> None:
    dense = _dense(1)
    for array in (False, True):
        unsorted = _unsorted_csr(dense, array=array)
        assert not unsorted.has_sorted_indices
        sorted_copy = unsorted.copy()
        sorted_copy.sort_indices()
        assert ext_hash(unsorted) == ext_hash(sorted_copy)
        assert not unsorted.has_sorted_indices  # hashing does not change its input
        assert ext_hash(unsorted.tocsc()) == ext_hash(sorted_copy.tocsc())


def test_sparse_stale_sorted_flag_is_not_trusted() -> None:
    matrix = sp.csr_matrix(_dense(2))
    digest = ext_hash(matrix)
    assert matrix.has_sorted_indices
    matrix.indices[:] = matrix.indices.copy()  # same
    reordered = _unsorted_csr(_dense(2))
    reordered.has_sorted_indices = True  # a lying flag
    reordered.has_canonical_format = True
    assert ext_hash(reordered) == digest


def test_sparse_duplicates_are_summed_and_index_dtype_ignored() -> None:
    rows, cols = np.array([0, 1, 0, 2]), np.array([1, 2, 1, 0])
    with_duplicates = sp.coo_matrix((np.array([1.0, 2.0, 3.0, 4.0]), (rows, cols)), shape=(3, 3))
    summed = sp.coo_matrix(
        (np.array([4.0, 2.0, 4.0]), (np.array([0, 1, 2]), np.array([1, 2, 0]))), shape=(3, 3)
    )
    assert ext_hash(with_duplicates) == ext_hash(summed)
    assert ext_hash(with_duplicates.tocsr()) == ext_hash(summed.tocsr())
    csr = sp.csr_matrix(_dense(3))
    wide: Any = csr.copy()  # the stubs do not let the index arrays be set
    wide.indices, wide.indptr = csr.indices.astype(np.int64), csr.indptr.astype(np.int64)
    assert csr.indices.dtype != wide.indices.dtype
    assert ext_hash(csr) == ext_hash(wide)


def test_sparse_format_and_api_are_part_of_the_key() -> None:
    dense = _dense(4)
    matrices = [_as(sp.csr_matrix(dense), fmt) for fmt in FORMATS]
    arrays = [_as(sp.csr_array(dense), fmt) for fmt in FORMATS]
    distinct(*matrices, *arrays, dense)


def test_sparse_explicit_zero_is_an_entry() -> None:
    matrix = sp.csr_matrix(np.eye(3))
    with_zero = matrix.copy()
    with_zero[0, 2] = 0.0  # stored explicitly
    assert with_zero.nnz == 4
    assert ext_hash(matrix) != ext_hash(with_zero)
    with_zero.eliminate_zeros()
    assert ext_hash(matrix) == ext_hash(with_zero)


def test_sparse_bsr_blocksize_is_part_of_the_key() -> None:
    dense = _dense(5)
    distinct(sp.bsr_matrix(dense, blocksize=(2, 2)), sp.bsr_matrix(dense, blocksize=(3, 4)))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 7), st.integers(1, 7), st.data())
def test_property_sparse_built_differently_hashes_equal(
    n_rows: int, n_cols: int, data: st.DataObject
) -> None:
    entries = data.draw(
        st.dictionaries(
            st.tuples(st.integers(0, n_rows - 1), st.integers(0, n_cols - 1)),
            st.floats(-1e6, 1e6, allow_nan=False).filter(bool),
            max_size=n_rows * n_cols,
        )
    )
    order = data.draw(st.permutations(list(entries)))
    rows = np.array([r for r, _ in order], dtype=np.int64)
    cols = np.array([c for _, c in order], dtype=np.int64)
    values = np.array([entries[key] for key in order], dtype=np.float64)
    shape = (n_rows, n_cols)
    shuffled = sp.coo_matrix((values, (rows, cols)), shape=shape)
    dense = np.zeros(shape)
    for (r, c), v in entries.items():
        dense[r, c] = v
    for fmt in ("coo", "csr", "csc"):
        assert ext_hash(_as(shuffled, fmt)) == ext_hash(_as(sp.coo_matrix(dense), fmt))
    if entries:
        key = data.draw(st.sampled_from(sorted(entries)))
        other = dense.copy()
        other[key] = np.nextafter(other[key], np.inf)
        assert ext_hash(shuffled.tocsr()) != ext_hash(sp.csr_matrix(other))


def test_scipy_is_imported_only_for_sparse_input() -> None:
    src = pathlib.Path(hashing.__file__).resolve().parents[2]
    script = (
        "import sys, numpy as np\n"
        "from corelay.io.hashing import ext_hash\n"
        "ext_hash([1, np.arange(3), np.ma.masked_array([1]), np.matrix([[1]]), {'a': 2.5}])\n"
        "print('scipy' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --- ndarray subclasses ---------------------------------------------------------------------


def test_matrix_hashes_its_values_and_differs_from_ndarray() -> None:
    values = np.arange(6.0).reshape(2, 3)
    matrix = np.matrix(values)
    assert ext_hash(matrix) == ext_hash(np.matrix(values.copy(order="F")))
    assert ext_hash(matrix.T) == ext_hash(np.matrix(values.T.copy()))
    distinct(matrix, values, np.matrix(values + 1), np.matrix(values.astype(np.float32)))


def test_masked_array_data_mask_and_fill_value() -> None:
    data = np.array([1.0, 2.0, 3.0])
    masked = np.ma.masked_array(data, mask=[False, True, False])
    assert ext_hash(masked) == ext_hash(np.ma.masked_array(data.copy(), mask=[False, True, False]))
    no_mask = np.ma.masked_array(data)
    assert ext_hash(no_mask) == ext_hash(np.ma.masked_array(data, mask=[False] * 3))
    distinct(
        masked,
        data,
        no_mask,
        np.ma.masked_array(data, mask=[True, False, False]),
        np.ma.masked_array([1.0, 9.0, 3.0], mask=[False, True, False]),  # data under the mask
        np.ma.masked_array(data, mask=[False, True, False], fill_value=-1.0),
    )


class _Tagged(np.ndarray):  # an ndarray subclass with an attribute
    unit: str = ""


def test_other_ndarray_subclass_hashes_class_values_and_attributes() -> None:
    a = np.arange(4.0).view(_Tagged)
    b = np.arange(4.0).view(_Tagged)
    assert ext_hash(a) == ext_hash(b)
    b.unit = "m"
    distinct(a, b, np.arange(4.0))


# --- records --------------------------------------------------------------------------------


@dataclasses.dataclass
class _Point:
    x: float
    y: Any = None


@dataclasses.dataclass
class _OtherPoint:
    x: float
    y: Any = None


class _Pair(NamedTuple):
    a: int
    b: int


_Legacy = namedtuple("_Legacy", ["a", "b"])  # pyright: ignore[reportUntypedNamedTuple] - the untyped form is tested too


class _Color(enum.Enum):
    RED = 1
    GREEN = 2


class _Level(enum.IntEnum):
    LOW = 1


def test_dataclasses() -> None:
    assert ext_hash(_Point(1.0, [np.arange(3)])) == ext_hash(_Point(1.0, [np.arange(3)]))
    distinct(_Point(1.0), _Point(2.0), _Point(1.0, 0), _OtherPoint(1.0), (1.0, None))


def test_namedtuples() -> None:
    assert ext_hash(_Pair(1, 2)) == ext_hash(_Pair(a=1, b=2))
    distinct(_Pair(1, 2), _Pair(2, 1), (1, 2), _Legacy(1, 2))


def test_enums() -> None:
    assert ext_hash(_Color.RED) == ext_hash(_Color(1))
    distinct(_Color.RED, _Color.GREEN, 1, _Level.LOW, 1.0)


# --- ranges, dates, numbers, dtypes ---------------------------------------------------------


def test_range_and_slice() -> None:
    assert ext_hash(range(0, 10, 2)) == ext_hash(range(5)[::1].__class__(0, 10, 2))
    distinct(range(5), range(1, 5), range(0, 5, 2), (0, 5, 1), slice(5), slice(0, 5), slice(5.0))


def test_dates_and_times() -> None:
    utc = datetime.UTC
    moment = datetime.datetime(2024, 5, 6, 7, 8, 9, 10)
    assert ext_hash(moment) == ext_hash(datetime.datetime.fromisoformat(moment.isoformat()))
    distinct(
        moment,
        moment.replace(microsecond=11),
        moment.replace(tzinfo=utc),
        moment.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
        moment.replace(fold=1),
        moment.date(),
        moment.time(),
        moment.time().replace(tzinfo=utc),
        datetime.timedelta(days=1),
        datetime.timedelta(seconds=86399),
    )


def test_decimal_and_fraction() -> None:
    assert ext_hash(fractions.Fraction(2, 4)) == ext_hash(fractions.Fraction(1, 2))
    assert ext_hash(decimal.Decimal("1.5")) == ext_hash(decimal.Decimal((0, (1, 5), -1)))
    # Equal numbers with other exponents compute differently (1.0 * 3 is 3.0, 1.00 * 3 is 3.00).
    distinct(
        decimal.Decimal("1.0"),
        decimal.Decimal("1.00"),
        decimal.Decimal("-1.0"),
        decimal.Decimal("NaN"),
        decimal.Decimal("Infinity"),
        fractions.Fraction(1, 2),
        fractions.Fraction(1, 3),
        0.5,
    )


def test_dtypes() -> None:
    assert ext_hash(np.dtype("float64")) == ext_hash(np.dtype(np.float64))
    distinct(
        np.dtype("<f8"),
        np.dtype(">f8"),
        np.dtype("f4"),
        np.dtype("M8[D]"),
        np.dtype("M8[s]"),
        np.dtype([("a", "<i4")]),
        np.dtype([("b", "<i4")]),
        np.dtype(("<i4", (2,))),
        np.float64,
    )


# --- classes, functions, code ---------------------------------------------------------------


def _double(x: float) -> float:
    return 2 * x


def _make(k: int) -> Callable[[float], float]:
    def add(x: float) -> float:
        return x + k

    return add


def _make_recursive(k: int) -> Callable[[int], int]:
    def countdown(n: int) -> int:
        return k if n <= 0 else countdown(n - 1)

    return countdown


def _with_default(value: int) -> Callable[[], int]:
    def get(x: int = value) -> int:
        return x

    return get


def test_classes_and_functions_by_qualified_name() -> None:
    assert ext_hash(_Point) == ext_hash(_Point)
    distinct(_Point, _OtherPoint, _double, _make, len, abs, np.add, np.multiply, int, float)


def test_local_class_is_refused() -> None:
    class Local:
        pass

    with pytest.raises(TypeError, match=r"^ext_hash: data\[0\]: unsupported class .*Local"):
        ext_hash([Local])


def test_closures_and_lambdas_by_code_and_values() -> None:
    assert ext_hash(_make(2)) == ext_hash(_make(2))
    assert ext_hash(_make(2)) != ext_hash(_make(3))
    assert ext_hash(_make_recursive(1)) == ext_hash(_make_recursive(1))
    assert ext_hash(_make_recursive(1)) != ext_hash(_make_recursive(2))

    def square(x: float) -> float:
        return x * x

    def cube(x: float) -> float:
        return x * x * x

    lambdas: list[Callable[[int], int]] = [
        lambda x: x + 1,
        lambda x: x + 2,
        lambda x: x - 1,
        lambda y: y + 1,
        lambda x: x + 1,
    ]
    distinct(*lambdas[:4], square, cube)
    assert ext_hash(lambdas[0]) == ext_hash(lambdas[4])
    distinct(_with_default(1), _with_default(2))  # the same code, other defaults
    assert ext_hash(_with_default(1)) == ext_hash(_with_default(1))


def test_closure_over_an_unhashable_value_names_it() -> None:
    def make() -> Callable[[], int]:
        source = (x for x in range(3))

        def step() -> int:
            return next(source)

        return step

    with pytest.raises(TypeError, match=r"^ext_hash: data\.<closure source>: unsupported type"):
        ext_hash(make())


# --- objects through their reduction ---------------------------------------------------------


class _Settings:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class _Registry(dict[str, int]):
    pass


def test_objects_by_reduction() -> None:
    a = _Settings(alpha=1.0, beta=np.arange(3))
    assert ext_hash(a) == ext_hash(_Settings(beta=np.arange(3), alpha=1.0))
    distinct(a, _Settings(alpha=1.0, beta=np.arange(4)), _Settings(alpha=1.0), {"alpha": 1.0})
    assert ext_hash(types.SimpleNamespace(a=1)) != ext_hash(types.SimpleNamespace(a=2))
    registry = _Registry(a=1, b=2)
    assert ext_hash(registry) == ext_hash(_Registry(b=2, a=1))
    distinct(registry, {"a": 1, "b": 2}, _Registry(a=1))
    assert ext_hash(np.random.default_rng(5)) == ext_hash(np.random.default_rng(5))
    assert ext_hash(np.random.default_rng(5)) != ext_hash(np.random.default_rng(6))


def test_self_referencing_object_is_a_value_error() -> None:
    a = _Settings()
    a.me = a  # type: ignore[attr-defined]  # _Settings takes any attribute
    with pytest.raises(ValueError, match="contains itself"):
        ext_hash(a)


def test_open_file_is_refused_with_its_path(tmp_path: pathlib.Path) -> None:
    refused = r"^ext_hash: data\['out'\]: unsupported type _io"
    with open(tmp_path / "f", "w") as file, pytest.raises(TypeError, match=refused):
        ext_hash({"out": file})


# --- hypothesis: equal values built differently, different values -----------------------------

_leaf = st.one_of(
    st.integers(-5, 5),
    st.floats(-10, 10, allow_nan=False),
    st.text(max_size=3),
    st.dates(),
    st.timedeltas(),
    st.fractions(max_denominator=20),
    st.decimals(allow_nan=False, places=2, min_value=-100, max_value=100),
    st.sampled_from(list(_Color)),
)


@st.composite
def _records(draw: st.DrawFn) -> tuple[Callable[[], object], tuple[object, ...]]:
    """A builder of a record (called twice gives equal, separately built values) and its key."""
    kind = draw(st.sampled_from(["point", "pair", "settings", "range", "matrix", "masked"]))
    a, b = draw(_leaf), draw(_leaf)
    n = draw(st.integers(0, 5))
    if kind == "point":
        return (lambda: _Point(a, [b])), (kind, a, b)
    if kind == "pair":
        return (lambda: _Pair(n, n + 1)), (kind, n)
    if kind == "settings":
        return (lambda: _Settings(x=a, y=(b,))), (kind, a, b)
    if kind == "range":
        return (lambda: range(n, 2 * n + 1)), (kind, n)
    if kind == "matrix":
        return (lambda: np.matrix(np.arange(n + 1.0))), (kind, n)
    return (lambda: np.ma.masked_array(np.arange(n + 1), mask=[True] + [False] * n)), (kind, n)


def _identity(key: tuple[object, ...]) -> str:
    """A comparison key of the values that built a record (types matter: 1 is not True)."""
    return repr([(type(part).__name__, part) for part in key])


@settings(max_examples=150, deadline=None)
@given(_records(), _records())
def test_property_records_equal_iff_built_from_equal_values(
    first: tuple[Callable[[], object], tuple[object, ...]],
    second: tuple[Callable[[], object], tuple[object, ...]],
) -> None:
    build_first, key_first = first
    build_second, key_second = second
    assert ext_hash(build_first()) == ext_hash(build_first())
    same = _identity(key_first) == _identity(key_second)
    assert (ext_hash(build_first()) == ext_hash(build_second())) == same


def test_too_deep_nesting_is_a_value_error() -> None:
    deep: list[object] = []
    for _ in range(20_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        ext_hash(deep)
    ext_hash([[[1]]])  # the hasher is usable afterwards
