# Type stubs for h5py's low-level dataspaces (only what this project uses).
from collections.abc import Sequence

class SpaceID:
    def get_simple_extent_type(self) -> int: ...

ALL: SpaceID
SCALAR: int
SIMPLE: int
NULL: int

def create(class_code: int) -> SpaceID: ...
def create_simple(
    dims_tpl: Sequence[int], max_dims_tpl: Sequence[int] | None = None
) -> SpaceID: ...
