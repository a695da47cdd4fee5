"""The order of keys() that docs/behaviour.rst gives: Zarr by name, as h5py lists by name."""

from pathlib import Path

from corelay.io.storage import HDF5Storage, ZarrStorage

NAMES = ["b", "a", "B", "é", "10", "9", "a b", "中", "z", "a-"]


def test_zarr_keys_are_sorted_by_name_as_hdf5_lists_them(tmp_path: Path) -> None:
    with (
        HDF5Storage(tmp_path / "k.h5", "w") as hdf5,
        ZarrStorage(tmp_path / "k.zarr", "w") as zarr_storage,
    ):
        for name in NAMES:
            hdf5[name] = 1
            zarr_storage[name] = 1
        assert list(zarr_storage.keys()) == sorted(NAMES)
        assert list(zarr_storage) == sorted(NAMES)
        assert list(hdf5.keys()) == list(zarr_storage.keys())
