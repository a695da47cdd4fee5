"""LazyArray over any ArraySource: the generic part every backend shares."""

from typing import Any

import numpy as np
import pytest

from corelay.io.lazy import ArraySource, LazyArray


class _MemorySource:
    """An array in memory, recording the blocks read from it."""

    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        self.array = array
        self.open = True
        self.reads: list[tuple[slice, ...]] = []

    @property
    def shape(self) -> tuple[int, ...]:
        shape: tuple[int, ...] = self.array.shape
        return shape

    @property
    def dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = self.array.dtype
        return dtype

    chunks = (2, 3)
    compression = "test"
    where = "'a' in memory"

    def alive(self) -> bool:
        return self.open

    def read(self, selection: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        assert len(selection) == self.array.ndim
        assert all(item.step is not None and item.step > 0 for item in selection)
        self.reads.append(selection)
        return self.array[selection].copy()


def test_a_source_is_an_array_source() -> None:
    assert isinstance(_MemorySource(np.zeros(3)), ArraySource)


def test_a_slice_reads_only_its_block() -> None:
    source = _MemorySource(np.arange(100 * 6).reshape(100, 6))
    lazy = LazyArray(source)
    np.testing.assert_array_equal(lazy[10:12, 1], source.array[10:12, 1])
    assert source.reads == [(slice(10, 12, 1), slice(1, 2, 1))]
    source.reads.clear()
    np.testing.assert_array_equal(lazy[50:10:-20], source.array[50:10:-20])
    assert source.reads == [(slice(30, 51, 20), slice(0, 6, 1))]
    source.reads.clear()
    assert lazy[5:5].shape == (0, 6)
    assert source.reads == []  # an empty selection reads nothing


def test_metadata_and_conversion() -> None:
    source = _MemorySource(np.arange(24, dtype=np.int16).reshape(4, 6))
    lazy = LazyArray(source)
    assert (lazy.shape, lazy.dtype, lazy.ndim, lazy.size, lazy.nbytes, len(lazy)) == (
        (4, 6),
        np.dtype(np.int16),
        2,
        24,
        48,
        4,
    )
    assert (lazy.chunks, lazy.compression) == ((2, 3), "test")
    np.testing.assert_array_equal(np.asarray(lazy), source.array)
    assert np.asarray(lazy, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="copy=False"):
        lazy.__array__(copy=False)
    with pytest.raises(TypeError, match="0-d"):
        len(LazyArray(_MemorySource(np.array(3.0))))
    assert LazyArray(_MemorySource(np.array(3.0)))[()] == 3.0


def test_a_closed_source_is_a_value_error() -> None:
    source = _MemorySource(np.arange(5))
    lazy = LazyArray(source)
    source.open = False
    with pytest.raises(ValueError, match=r"'a' in memory: its storage is closed"):
        lazy[0]
    assert "LazyArray" in repr(lazy)
