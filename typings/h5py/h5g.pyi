# Type stubs for h5py's low-level group interface (only what this project uses).
from h5py._objects import ObjectID
from h5py.h5l import LinkProxy
from h5py.h5p import PropID

class GroupID(ObjectID):
    @property
    def links(self) -> LinkProxy: ...
    def move(self, current_name: bytes, new_name: bytes, remote: GroupID | None = None) -> None: ...
    def unlink(self, name: bytes) -> None: ...

def create(
    loc: ObjectID, name: bytes | None, lcpl: PropID | None = None, gcpl: PropID | None = None
) -> GroupID: ...
