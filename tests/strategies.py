"""Hypothesis strategies for random stored trees."""

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(sizes=(16, 32, 64)),
    hnp.complex_number_dtypes(sizes=(64, 128)),
    hnp.byte_string_dtypes(min_len=1, max_len=8),
    hnp.unicode_string_dtypes(min_len=1, max_len=8),
)

# Text without lone surrogates: HDF5 stores text as UTF-8, which cannot hold them (the table of
# cases checks that they are refused with their path).
_UNICODE = st.characters(exclude_categories=["Cs"])


def _arrays_of(dtype: np.dtype[Any]) -> st.SearchStrategy[Any]:
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0)
    if dtype.kind == "U":
        # NumPy drops trailing NULs: an element must be what the array will hold.
        elements = st.text(_UNICODE, max_size=dtype.itemsize // 4).map(lambda t: t.rstrip("\x00"))
        return hnp.arrays(dtype, shapes, elements=elements)
    return hnp.arrays(dtype, shapes)


arrays = _DTYPES.flatmap(_arrays_of)
numpy_scalars = arrays.map(lambda array: array.reshape(-1)[:1]).filter(len).map(lambda a: a[0])

names = st.text(min_size=1, max_size=12).filter(
    lambda name: (
        "/" not in name
        and name not in (".", "..")
        and not name.startswith(".corelay")
        and name != "zarr.json"  # the name of Zarr's metadata documents, refused by Zarr
        and "\x00" not in name
    )
)

leaves = st.one_of(
    arrays,
    numpy_scalars,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.complex_numbers(allow_nan=True),
    st.text().filter(lambda text: "\x00" not in text),
    st.binary(),
    st.none(),
)


def trees(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Random trees of leaves in dicts, tuples and lists."""
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.dictionaries(names, children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            st.lists(children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


__all__ = ["arrays", "names", "np", "trees"]
