# Type stubs for h5py's low-level object interface (only what this project uses).
from h5py._objects import ObjectID

def open(loc: ObjectID, name: bytes) -> ObjectID: ...
