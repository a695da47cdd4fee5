# Type stubs for h5py's low-level datatypes (only what this project uses).
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

class TypeID:
    def get_size(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    def equal(self, other: TypeID) -> bool: ...
    def copy(self) -> TypeID: ...

CSET_ASCII: int
CSET_UTF8: int

def py_create(dtype_in: DTypeLike | np.dtype[Any], logical: bool = False) -> TypeID: ...
