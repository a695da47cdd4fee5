# Type stubs for h5py's low-level file interface (only what this project uses).
from h5py.h5ac import CacheConfig
from h5py.h5g import GroupID

class FileID(GroupID):
    def get_mdc_config(self) -> CacheConfig: ...
    def set_mdc_config(self, config: CacheConfig) -> None: ...
