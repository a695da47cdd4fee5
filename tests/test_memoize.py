"""memoize: a function's results cached in a Storable, keyed by its name and arguments."""

import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import h5py
import numpy as np
import numpy.typing as npt
import pytest

from corelay.io import CacheWarning
from corelay.io.hashing import ext_hash, function_hash
from corelay.io.memoize import memoize
from corelay.io.storage import HashedHDF5, NoDataSource, NoStorage
from tests.cases import assert_same_tree


class Counted:
    """A function of arrays that counts its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(
        self, signal: npt.NDArray[np.float64], order: int = 1, *, scale: float = 1.0
    ) -> npt.NDArray[np.float64]:
        self.calls.append((signal, order, scale))
        return np.diff(signal, n=order) * scale

    def __reduce__(self) -> tuple[type["Counted"], tuple[()]]:
        # Its value, for the cache keys of the functions that close over it: what it computes
        # does not depend on the calls it has recorded.
        return (Counted, ())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "memo.h5"


@pytest.fixture
def cache(path: Path) -> Iterator[HashedHDF5]:
    with h5py.File(path, "w") as file:
        yield HashedHDF5(file.create_group("memo"))


def _memoized(io: Any, counted: Counted) -> Callable[..., npt.NDArray[np.float64]]:
    def derivative(
        signal: npt.NDArray[np.float64], order: int = 1, *, scale: float = 1.0
    ) -> npt.NDArray[np.float64]:
        return counted(signal, order, scale=scale)

    return memoize(io)(derivative)


SIGNAL = np.array([0.0, 1.0, 4.0, 9.0, 16.0])


def test_second_call_reads_the_stored_result(cache: HashedHDF5) -> None:
    counted = Counted()
    derivative = _memoized(cache, counted)
    first = derivative(SIGNAL)
    second = derivative(SIGNAL.copy())
    assert len(counted.calls) == 1
    assert_same_tree(second, first)
    assert_same_tree(first, np.diff(SIGNAL))


def test_equal_calls_share_an_entry(cache: HashedHDF5) -> None:
    counted = Counted()
    derivative = _memoized(cache, counted)
    derivative(SIGNAL)
    derivative(SIGNAL, 1)  # the default, given
    derivative(signal=SIGNAL, order=1, scale=1.0)  # by keyword
    derivative(np.asfortranarray(SIGNAL))  # another memory layout
    assert len(counted.calls) == 1


def test_different_arguments_compute(cache: HashedHDF5) -> None:
    counted = Counted()
    derivative = _memoized(cache, counted)
    results = [
        derivative(SIGNAL),
        derivative(SIGNAL, 2),
        derivative(SIGNAL, scale=2.0),
        derivative(SIGNAL.astype(np.float32)),
        derivative(SIGNAL + 1e-12),
    ]
    assert len(counted.calls) == 5
    for result, (signal, order, scale) in zip(results, counted.calls, strict=True):
        assert_same_tree(result, np.diff(signal, n=order) * scale)


def test_entries_record_the_function_and_keyword_arguments(path: Path) -> None:
    counted = Counted()
    name = f"{__name__}._memoized.<locals>.derivative"
    with h5py.File(path, "w") as file:
        cache = HashedHDF5(file.create_group("memo"))
        derivative = _memoized(cache, counted)
        code = function_hash(derivative.__wrapped__)  # type: ignore[attr-defined]
        meta = {"function": name, "code": code, "kwargs": {"scale": 0.5}}
        derivative(SIGNAL, 2, scale=0.5)
        # data_in is the tuple of positional arguments, defaults applied.
        assert_same_tree(cache.read((SIGNAL, 2), meta), np.diff(SIGNAL, n=2) * 0.5)
        # the metadata is stored once, by its hash
        assert_same_tree(cache.read_meta(ext_hash(meta)), meta)


def test_functions_are_told_apart_by_qualified_name(cache: HashedHDF5) -> None:
    first, second = Counted(), Counted()
    derivative = _memoized(cache, first)

    def other(
        signal: npt.NDArray[np.float64], order: int = 1, *, scale: float = 1.0
    ) -> npt.NDArray[np.float64]:
        return second(signal, order, scale=scale)

    derivative(SIGNAL)
    memoize(cache)(other)(SIGNAL)
    assert len(first.calls) == len(second.calls) == 1


def test_another_process_reads_the_cache(path: Path) -> None:
    counted = Counted()
    with h5py.File(path, "w") as file:
        _memoized(HashedHDF5(file.create_group("memo")), counted)(SIGNAL)
    with h5py.File(path, "a") as file:
        memo = file["memo"]
        assert isinstance(memo, h5py.Group)
        result = _memoized(HashedHDF5(memo), counted)(SIGNAL)
    assert len(counted.calls) == 1
    assert_same_tree(result, np.diff(SIGNAL))


def test_no_storage_computes_every_time() -> None:
    counted = Counted()
    derivative = _memoized(NoStorage(), counted)
    assert_same_tree(derivative(SIGNAL), np.diff(SIGNAL))
    assert_same_tree(derivative(SIGNAL), np.diff(SIGNAL))
    assert len(counted.calls) == 2


def test_read_only_file_computes_without_error(path: Path) -> None:
    counted = Counted()
    with h5py.File(path, "w") as file:
        _memoized(HashedHDF5(file.create_group("memo")), counted)(SIGNAL)
    with h5py.File(path, "r") as file:
        memo = file["memo"]
        assert isinstance(memo, h5py.Group)
        cache = HashedHDF5(memo)
        derivative = _memoized(cache, counted)
        assert_same_tree(derivative(SIGNAL), np.diff(SIGNAL))  # stored: read
        assert len(counted.calls) == 1
        entries = sorted(memo)
        assert_same_tree(derivative(SIGNAL, 2), np.diff(SIGNAL, n=2))  # computed, not stored
        assert_same_tree(derivative(SIGNAL, 2), np.diff(SIGNAL, n=2))
        assert len(counted.calls) == 3
        assert sorted(memo) == entries


def test_unstorable_results_are_returned_with_a_cache_warning(cache: HashedHDF5) -> None:
    calls: list[int] = []

    @memoize(cache)
    def labels(count: int) -> set[str]:
        calls.append(count)
        return {"a", "b"}

    for _ in range(2):
        with pytest.warns(CacheWarning, match=r"labels was returned but not cached: TypeError: "):
            assert labels(2) == {"a", "b"}
    assert calls == [2, 2]


class _FailingStorage:
    """A storage whose writes fail as a full disk does."""

    def __init__(self) -> None:
        self.writes = 0

    def read(self, data_in: Any, meta: Any) -> Any:
        raise NoDataSource()

    def write(self, data_out: Any, data_in: Any, meta: Any) -> None:
        self.writes += 1
        raise OSError(28, "No space left on device")


def test_failed_write_returns_the_result_with_a_cache_warning() -> None:
    io = _FailingStorage()

    @memoize(io)
    def double(value: int) -> int:
        return 2 * value

    with pytest.warns(CacheWarning, match="No space left on device") as record:
        assert double(21) == 42
    assert io.writes == 1
    assert issubclass(record[0].category, UserWarning)
    assert record[0].filename == __file__  # points at the call


def test_unhashable_arguments_are_loud(cache: HashedHDF5) -> None:
    @memoize(cache)
    def total(values: Iterator[int]) -> int:
        return sum(values)

    with pytest.raises(TypeError, match=r"data\[0\]: unsupported type generator"):
        total(iter(x for x in range(3)))


# --- functions of the same name -------------------------------------------------------------


_Step: TypeAlias = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]


def _make(k: int) -> Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    def shifted(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return a + k

    return shifted


def test_closures_over_other_values_are_other_entries(cache: HashedHDF5) -> None:
    two, three = memoize(cache)(_make(2)), memoize(cache)(_make(3))
    assert two.__qualname__ == three.__qualname__
    assert_same_tree(two(SIGNAL), SIGNAL + 2)
    assert_same_tree(three(SIGNAL), SIGNAL + 3)
    assert_same_tree(memoize(cache)(_make(2))(SIGNAL), SIGNAL + 2)


def test_lambdas_with_other_code_are_other_entries(cache: HashedHDF5) -> None:
    double_step: _Step = lambda a: a * 2  # noqa: E731 - two lambdas are the point
    square_step: _Step = lambda a: a * a  # noqa: E731
    double, square = memoize(cache)(double_step), memoize(cache)(square_step)
    assert double.__qualname__ == square.__qualname__
    assert_same_tree(double(SIGNAL), SIGNAL * 2)
    assert_same_tree(square(SIGNAL), SIGNAL * SIGNAL)


def test_a_rebound_closure_variable_is_a_new_key(cache: HashedHDF5) -> None:
    factor = 2.0

    @memoize(cache)
    def scale(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return a * factor

    assert_same_tree(scale(SIGNAL), SIGNAL * 2)
    factor = 5.0
    assert_same_tree(scale(SIGNAL), SIGNAL * 5)


def test_same_name_other_body_is_another_entry(cache: HashedHDF5) -> None:
    namespace: dict[str, Any] = {"__name__": __name__}
    exec("def step(a):\n    return a + 1\n", namespace)
    first = memoize(cache)(namespace["step"])
    exec("def step(a):\n    return a - 1\n", namespace)
    second = memoize(cache)(namespace["step"])
    assert_same_tree(first(SIGNAL), SIGNAL + 1)
    assert_same_tree(second(SIGNAL), SIGNAL - 1)


def test_a_function_that_cannot_be_keyed_is_refused_at_decoration(cache: HashedHDF5) -> None:
    source = (x for x in range(3))

    def step(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return a + next(source)

    with pytest.raises(TypeError, match=r"^memoize: .*step cannot be cached: .*<closure source>"):
        memoize(cache)(step)


def test_other_callables_are_keyed_by_value(cache: HashedHDF5) -> None:
    add_one = memoize(cache)(functools.partial(np.add, 1.0))
    add_two = memoize(cache)(functools.partial(np.add, 2.0))
    assert_same_tree(add_one(SIGNAL), SIGNAL + 1)
    assert_same_tree(add_two(SIGNAL), SIGNAL + 2)


class Tally(list[int]):
    """A record of calls that is not part of the cache key of a function closing over it."""

    def __reduce__(self) -> tuple[type["Tally"], tuple[()]]:
        return (Tally, ())


def test_tuple_results_round_trip(cache: HashedHDF5) -> None:
    calls = Tally()

    @memoize(cache)
    def split(
        values: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.int64], tuple[npt.NDArray[np.int64], ...]]:
        calls.append(1)
        return values[:1], (values[1:2], values[2:])

    first = split(np.arange(5))
    second = split(np.arange(5))
    assert len(calls) == 1
    assert_same_tree(second, first)
    assert_same_tree(second, (np.arange(1), (np.arange(1, 2), np.arange(2, 5))))


def test_the_wrapper_looks_like_the_function(cache: HashedHDF5) -> None:
    def documented(signal: npt.NDArray[np.float64], *, scale: float = 1.0) -> Any:
        """Scales the signal."""
        return signal * scale

    wrapped = memoize(cache)(documented)
    assert wrapped.__name__ == "documented"
    assert wrapped.__doc__ == "Scales the signal."
    assert wrapped.__wrapped__ is documented  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(documented)


def test_memoize_needs_a_storable() -> None:
    with pytest.raises(TypeError):
        memoize("cache.h5")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "result",
    [
        {"labels": np.arange(3), "score": 0.5, "name": "kmeans"},
        [1, "two", 3.0, None, b"four"],
        7,
        2.5,
        None,
        "text",
        (np.ones(2), {"nested": [np.zeros(1)]}),
    ],
    ids=["dict", "list", "int", "float", "none", "str", "tuple-of-mixed"],
)
def test_any_stored_tree_is_cached(path: Path, result: Any) -> None:
    calls = Tally()

    @memoize(HashedHDF5(h5py.File(path, "w").create_group("memo")))
    def step(value: int) -> Any:
        calls.append(value)
        return result

    first = step(1)
    second = step(1)
    assert calls == [1]
    assert first is result  # computed: returned as is
    assert_same_tree(second, result)  # read back: the same tree (dicts as OrderedDict)
