# Type stubs for h5py's low-level dataset interface (only what this project uses).
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from h5py._objects import ObjectID
from h5py.h5p import PropID
from h5py.h5s import SpaceID
from h5py.h5t import TypeID

class StoreInfo(NamedTuple):
    chunk_offset: tuple[int, ...]
    filter_mask: int
    byte_offset: int | None
    size: int

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
    def chunk_iter(self, callback: Callable[[StoreInfo], object]) -> None: ...
    def get_chunk_info_by_coord(self, chunk_offset: tuple[int, ...]) -> StoreInfo: ...
    def read_direct_chunk(self, offsets: tuple[int, ...]) -> tuple[int, bytes]: ...
    def write_direct_chunk(
        self, offsets: tuple[int, ...], data: bytes, filter_mask: int = 0
    ) -> None: ...
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
