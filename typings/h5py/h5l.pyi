# Type stubs for h5py's low-level link interface (only what this project uses).
from h5py.h5g import GroupID
from h5py.h5p import PropID

class LinkInfo:
    @property
    def type(self) -> int: ...

class LinkProxy:
    def exists(self, name: bytes) -> bool: ...
    def get_info(self, name: bytes) -> LinkInfo: ...
    # A soft link's target path, or an external link's (file name, path, flags).
    def get_val(self, name: bytes) -> bytes | tuple[bytes, bytes, int]: ...
    def create_hard(
        self, new_name: bytes, cur_loc: GroupID, cur_name: bytes, lcpl: PropID | None = None
    ) -> None: ...
    def move(
        self,
        src: bytes,
        dst_loc: GroupID,
        dst: bytes,
        lcpl: PropID | None = None,
        lapl: PropID | None = None,
    ) -> None: ...

TYPE_HARD: int
TYPE_SOFT: int
TYPE_EXTERNAL: int
