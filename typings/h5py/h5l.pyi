# Type stubs for h5py's low-level link interface (only what this project uses).
from h5py.h5g import GroupID
from h5py.h5p import PropID

class LinkProxy:
    def exists(self, name: bytes) -> bool: ...
    def create_hard(
        self, new_name: bytes, cur_loc: GroupID, cur_name: bytes, lcpl: PropID | None = None
    ) -> None: ...
