"""memoize keeps the decorated function's signature for type checkers.

mypy and pyright check this file: ``assert_type`` fails them if the return type is lost, and
mypy reports an unused ``type: ignore`` if a wrong argument type were no longer an error.
"""

from pathlib import Path
from typing import assert_type

import h5py
import numpy as np
import numpy.typing as npt
import pytest

from corelay.io.memoize import memoize
from corelay.io.storage import HashedHDF5, NoStorage, RecursiveNumPyArrayTuple


def test_decorated_functions_keep_their_signature(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "typed.h5", "w") as file:
        cache = HashedHDF5(file.create_group("typed"))

        @memoize(cache)
        def scaled(
            values: npt.NDArray[np.float64], factor: float = 2.0, *, offset: int = 0
        ) -> npt.NDArray[np.float64]:
            return values * factor + offset

        @memoize(NoStorage())
        def pair(values: npt.NDArray[np.int64]) -> RecursiveNumPyArrayTuple:
            return (values, (values,))

        result = scaled(np.arange(3.0), 3.0, offset=1)
        assert_type(result, npt.NDArray[np.float64])
        assert_type(pair(np.arange(2)), RecursiveNumPyArrayTuple)
        np.testing.assert_array_equal(result, [1.0, 4.0, 7.0])
        with pytest.raises(TypeError):
            scaled(np.arange(3.0), offset="one")  # type: ignore[arg-type]
