# Type stubs for h5py's low-level dataset interface (only what this project uses).
from typing import Any

import numpy as np
from h5py._objects import ObjectID
from h5py.h5p import PropID
from h5py.h5s import SpaceID
from h5py.h5t import TypeID

class DatasetID(ObjectID):
    @property
    def shape(self) -> tuple[int, ...] | None: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    def get_space(self) -> SpaceID: ...
    def get_type(self) -> TypeID: ...
    def get_create_plist(self) -> PropID: ...
    def get_storage_size(self) -> int: ...
    def set_extent(self, shape: tuple[int, ...]) -> None: ...
    def get_offset(self) -> int | None: ...
    def read(
        self,
        mspace: SpaceID,
        fspace: SpaceID,
        arr_obj: np.ndarray[Any, Any],
        mtype: TypeID | None = None,
    ) -> None: ...
    def write(
        self,
        mspace: SpaceID,
        fspace: SpaceID,
        arr_obj: np.ndarray[Any, Any],
        mtype: TypeID | None = None,
    ) -> None: ...

COMPACT: int
CHUNKED: int
ALLOC_TIME_INCR: int
CONTIGUOUS: int
VIRTUAL: int

def create(
    loc: ObjectID,
    name: bytes | None,
    tid: TypeID,
    space: SpaceID,
    dcpl: PropID | None = None,
    lcpl: PropID | None = None,
) -> DatasetID: ...
