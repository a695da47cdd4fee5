# Type stubs for h5py's low-level dataspaces (only what this project uses).
from collections.abc import Sequence

class SpaceID:
    def get_simple_extent_type(self) -> int: ...
    def get_simple_extent_dims(self, maxdims: bool = False) -> tuple[int, ...]: ...
    def select_hyperslab(
        self, start: tuple[int, ...], count: tuple[int, ...], stride: tuple[int, ...] | None = None
    ) -> None: ...

ALL: SpaceID
SCALAR: int
UNLIMITED: int
SIMPLE: int
NULL: int

def create(class_code: int) -> SpaceID: ...
def create_simple(
    dims_tpl: Sequence[int], max_dims_tpl: Sequence[int] | None = None
) -> SpaceID: ...
