"""HDF5 files interoperate with corelay 1.0.0 in both directions."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corelay.io.storage import HDF5Storage
from tests.cases import assert_same_tree
from tests.upstream import FIXTURES, decode, fixture_description, run_upstream

_ENTRIES: dict[str, Any] = fixture_description()["files"]["hdf5storage.h5"]["entries"]


@pytest.mark.parametrize("key", sorted(_ENTRIES))
def test_reads_upstream_file_as_upstream_does(key: str) -> None:
    expected = decode(_ENTRIES[key]["upstream_read"])
    with HDF5Storage(FIXTURES / "hdf5storage.h5", "r") as storage:
        assert_same_tree(storage[key], expected)


def test_upstream_tuple_keeps_upstream_order() -> None:
    # corelay 1.0.0 wrote a 12-tuple as a plain group; it reads back name-sorted, int keys.
    with HDF5Storage(FIXTURES / "hdf5storage.h5", "r") as storage:
        assert list(storage["tuple"])[:4] == [0, 1, 10, 11]


_READ_WITH_UPSTREAM = """
import json, sys
import numpy as np
from corelay.io.storage import HDF5Storage

def describe(value):
    if isinstance(value, dict):
        return {"type": type(value).__name__, "items": [[k, describe(v)] for k, v in value.items()]}
    if isinstance(value, np.ndarray | np.generic):
        return {"type": type(value).__name__, "dtype": value.dtype.str, "value": value.tolist()}
    return {"type": type(value).__name__, "value": value}

with HDF5Storage(sys.argv[1], mode="r") as storage:
    print(json.dumps({key: describe(storage.at(data_key=key).read()) for key in sys.argv[2:]}))
"""


def test_upstream_reads_files_written_here(tmp_path: Path) -> None:
    path = tmp_path / "ours.h5"
    with HDF5Storage(path, "w") as storage:
        storage["array"] = np.arange(6.0).reshape(2, 3)
        storage["scalar"] = np.float32(1.5)
        storage["text"] = "grüße"
        storage["dict"] = {"b": np.arange(2), "a": np.ones(1)}
        storage["tuple"] = tuple(np.full(1, i) for i in range(3))
    read = run_upstream(_READ_WITH_UPSTREAM, str(path), "array", "scalar", "text", "dict", "tuple")
    assert read["array"] == {"type": "ndarray", "dtype": "<f8", "value": [[0, 1, 2], [3, 4, 5]]}
    assert read["scalar"] == {"type": "float32", "dtype": "<f4", "value": 1.5}
    assert read["text"] == {"type": "str", "value": "grüße"}
    assert read["dict"]["type"] == "OrderedDict"
    assert [key for key, _ in read["dict"]["items"]] == ["b", "a"]
    assert read["tuple"]["items"] == [
        [index, {"type": "ndarray", "dtype": "<i8", "value": [index]}] for index in range(3)
    ]
