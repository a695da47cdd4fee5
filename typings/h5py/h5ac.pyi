# Type stubs for h5py's metadata cache configuration (only what this project uses).
class CacheConfig:
    set_initial_size: bool
    initial_size: int
    min_size: int
    max_size: int
