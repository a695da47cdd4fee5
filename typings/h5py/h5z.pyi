# Type stubs for h5py's low-level filters (only what this project uses).

FILTER_DEFLATE: int
FILTER_LZF: int
FLAG_OPTIONAL: int
