"""Big arrays: compression and chunking, appending, lazy reads.

The behaviour HDF5Storage and ZarrStorage share runs against both (the ``big`` fixture); what
only one format has is tested here for HDF5 and in test_zarr_big for Zarr.
"""

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import h5py
import numpy as np
import pytest
from h5py import h5d

from corelay.cli import main
from corelay.io._hdf5.write import CHUNK_BYTES, Compression, chunk_shape
from corelay.io.journal import JournaledFile
from corelay.io.storage import (
    HDF5Storage,
    LazyArray,
    Mode,
    NoDataSource,
    NoDataTarget,
    ZarrStorage,
)


class _Opener(Protocol):
    def __call__(
        self, path: Path, mode: Mode, data_key: str | None = None, *, compression: Any = None
    ) -> HDF5Storage | ZarrStorage: ...


class Big(NamedTuple):
    """A storage with big-array support, as the shared tests use it."""

    name: str
    suffix: str
    open: _Opener
    """Opens a storage; ``compression`` as the constructor takes it."""
    other: Any
    """A compression besides gzip (which both formats have), of the format's own type."""


def _open_hdf5(
    path: Path, mode: Mode, data_key: str | None = None, *, compression: Any = None
) -> HDF5Storage | ZarrStorage:
    return HDF5Storage(path, mode, data_key, compression=compression)


def _open_zarr(
    path: Path, mode: Mode, data_key: str | None = None, *, compression: Any = None
) -> HDF5Storage | ZarrStorage:
    return ZarrStorage(path, mode, data_key, compression=compression)


BIG = [Big("hdf5", ".h5", _open_hdf5, "lzf"), Big("zarr", ".zarr", _open_zarr, "zstd")]


@pytest.fixture(params=BIG, ids=[big.name for big in BIG])
def big(request: pytest.FixtureRequest) -> Big:
    """Each storage with big-array support in turn."""
    selected: Big = request.param
    return selected


def snapshot(path: Path) -> dict[str, bytes]:
    """Every byte of a storage: its file, or every file of its directory, by relative path."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


# ------------------------------------------------------------------ compression and chunking


def _maps(rows: int = 64) -> np.ndarray[Any, Any]:
    # Compressible like attribution maps: smooth, with noise in the low bits.
    base = np.linspace(0, 1, rows * 3 * 32 * 32, dtype=np.float32).reshape(rows, 3, 32, 32)
    return base + np.random.default_rng(0).normal(0, 1e-3, base.shape).astype(np.float32)


@pytest.mark.parametrize("compression", ["gzip", "lzf", "zstd"])
def test_a_storage_compresses_what_it_writes(tmp_path: Path, compression: Compression) -> None:
    path = tmp_path / "c.h5"
    maps = _maps()
    with HDF5Storage(path, "w", compression=compression) as storage:
        storage["tree"] = {"maps": maps, "small": np.arange(4.0), "n": 3}
        back = storage["tree"]
    np.testing.assert_array_equal(back["maps"], maps)
    with h5py.File(path, "r") as file:
        dataset = file["tree/maps"]
        assert isinstance(dataset, h5py.Dataset)
        assert dataset.id.get_create_plist().get_layout() == h5d.CHUNKED
        assert dataset.id.get_storage_size() < maps.nbytes
        small = file["tree/small"]
        assert isinstance(small, h5py.Dataset)
        # Small arrays stay compact, in their dataset's header.
        assert small.id.get_create_plist().get_layout() == h5d.COMPACT


def test_uncompressed_by_default(tmp_path: Path) -> None:
    with HDF5Storage(tmp_path / "u.h5", "w") as storage:
        storage["maps"] = _maps()
        assert _dataset(storage, "maps").id.get_create_plist().get_layout() == h5d.CONTIGUOUS


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_files_stay_plain_hdf5(tmp_path: Path, compression: Compression) -> None:
    """h5py alone, in a process that never imports this package, reads gzip and lzf arrays."""
    path = tmp_path / "plain.h5"
    maps = _maps(8)
    with HDF5Storage(path, "w", compression=compression) as storage:
        storage["maps"] = maps
    script = (
        "import sys, h5py, numpy as np\n"
        "d = h5py.File(sys.argv[1], 'r')['maps']\n"
        "print(d.compression, float(np.asarray(d[()], dtype=np.float64).sum()))\n"
        "assert not any(m.startswith('corelay') for m in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == compression
    assert float(out[1]) == pytest.approx(float(maps.astype(np.float64).sum()))


def test_write_overrides_the_storage_default(tmp_path: Path, big: Big) -> None:
    maps = _maps(16)
    with big.open(tmp_path / f"o{big.suffix}", "w", "k", compression="gzip") as storage:
        storage.write(maps, compression=None)
        assert storage.lazy("k").compression is None
        storage.write(maps, compression=big.other)
        assert storage.lazy("k").compression == big.other
        storage.write(maps)
        assert storage.lazy("k").compression == "gzip"
        storage.at(data_key="v")["w"] = maps  # views share the default
        assert storage.lazy("w").compression == "gzip"
        np.testing.assert_array_equal(storage["k"], maps)


def test_unknown_compression_is_refused_before_the_file_changes(tmp_path: Path, big: Big) -> None:
    path = tmp_path / f"x{big.suffix}"
    # Each call below is wrong on purpose: the type checkers refuse it, and so must run time.
    with pytest.raises(TypeError, match="brotli"):
        big.open(path, "w", compression="brotli")
    assert not path.exists()
    with big.open(path, "w", "k") as storage:
        storage.write(1)
        with pytest.raises(TypeError, match="brotli"):
            storage.write(_maps(4), compression="brotli")  # type: ignore[arg-type]  # the mistake under test
        with pytest.raises(TypeError, match="brotli"):
            storage.compression = "brotli"  # type: ignore[assignment]  # the mistake under test
        assert storage["k"] == 1 and storage.compression in (None, "zstd")
        storage.compression = big.other
        storage.write(_maps(4))
        assert storage.lazy("k").compression == big.other


def test_zstd_without_hdf5plugin_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "hdf5plugin", None)  # import fails
    with pytest.raises(ImportError, match=r"zstd.*extra|extra.*zstd"):
        HDF5Storage(tmp_path / "z.h5", "w", compression="zstd")
    with HDF5Storage(tmp_path / "z.h5", "w", "k") as storage:
        with pytest.raises(ImportError, match="hdf5plugin"):
            storage.write(_maps(4), compression="zstd")
        assert "k" not in storage


@pytest.mark.parametrize(
    ("shape", "itemsize"),
    [((50_000, 3, 224, 224), 4), ((10**6,), 8), ((3, 10**8), 8), ((7,), 8), ((0, 5), 4)],
)
def test_chunks_hold_about_a_mebibyte_along_the_first_axis(
    shape: tuple[int, ...], itemsize: int
) -> None:
    chunks = chunk_shape(shape, itemsize)
    assert len(chunks) == len(shape)
    assert all(1 <= chunk <= max(length, 1) for chunk, length in zip(chunks, shape, strict=True))
    size = int(np.prod(chunks)) * itemsize
    assert size <= CHUNK_BYTES
    total = int(np.prod(shape)) * itemsize
    assert size >= min(total, CHUNK_BYTES // 2) or chunks == tuple(max(s, 1) for s in shape)
    # Whole rows when a row fits: a slice of rows reads whole chunks.
    row = int(np.prod(shape[1:])) * itemsize
    if row <= CHUNK_BYTES:
        assert chunks[1:] == tuple(max(length, 1) for length in shape[1:])


# ------------------------------------------------------------------------------- appending


def test_append_grows_an_array_batch_by_batch(tmp_path: Path, big: Big) -> None:
    path = tmp_path / f"a{big.suffix}"
    maps = _maps(40)
    with big.open(path, "w", compression="gzip") as storage:
        assert storage.append("maps", maps[:10]) == (10, 3, 32, 32)
        assert storage.append("maps", maps[10:11]) == (11, 3, 32, 32)
        assert storage.append("maps", maps[11:11]) == (11, 3, 32, 32)
        assert storage.append("maps", maps[11:40]) == (40, 3, 32, 32)
        np.testing.assert_array_equal(storage["maps"], maps)
        assert storage.lazy("maps").compression == "gzip"
        assert storage.append("deep/er", np.arange(3)) == (3,)
    with big.open(path, "a") as storage:  # appending goes on after reopening
        assert storage.append("maps", maps[:2]) == (42, 3, 32, 32)
        np.testing.assert_array_equal(storage["maps"][40:], maps[:2])
        np.testing.assert_array_equal(storage["deep/er"], np.arange(3))


def test_hdf5_appended_arrays_are_resizable_datasets(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with HDF5Storage(path, "w", compression="gzip") as storage:
        storage.append("maps", _maps(3))
    with h5py.File(path, "r") as file:
        dataset = file["maps"]
        assert isinstance(dataset, h5py.Dataset)
        assert dataset.maxshape == (None, 3, 32, 32)
        assert dataset.compression == "gzip"


def test_a_first_empty_batch_creates_an_empty_array(tmp_path: Path, big: Big) -> None:
    with big.open(tmp_path / f"e{big.suffix}", "w") as storage:
        assert storage.append("e", np.empty((0, 4), np.int16)) == (0, 4)
        assert storage.append("e", np.ones((2, 4), np.int16)) == (2, 4)
        np.testing.assert_array_equal(storage["e"], np.ones((2, 4), np.int16))


def _dataset(storage: HDF5Storage, key: str) -> h5py.Dataset:
    dataset = storage.io[key]
    assert isinstance(dataset, h5py.Dataset)
    return dataset


def test_a_refused_batch_writes_nothing(tmp_path: Path, big: Big) -> None:
    path = tmp_path / f"r{big.suffix}"
    with big.open(path, "w") as storage:
        storage.append("a", np.zeros((2, 3), np.float32))
        storage["whole"] = np.zeros((5, 3), np.float32)
        storage["scalar"] = 3
        storage["group"] = {"x": 1}
        storage["deep/inside"] = np.zeros((2, 3), np.float32)
        before = snapshot(path)
        with pytest.raises(TypeError, match="dtype"):
            storage.append("a", np.zeros((2, 3), np.float64))
        with pytest.raises(ValueError, match="shape"):
            storage.append("a", np.zeros((2, 4), np.float32))
        with pytest.raises(ValueError, match="shape"):
            storage.append("a", np.zeros((2, 3, 1), np.float32))
        with pytest.raises(ValueError, match="0-d"):
            storage.append("a", np.zeros((), np.float32))
        with pytest.raises(TypeError, match="numeric"):
            storage.append("a", np.array(["x", "y"]))
        for key in ("whole", "scalar", "group", "deep"):
            with pytest.raises(TypeError, match="append"):
                storage.append(key, np.zeros((2, 3), np.float32))
        with pytest.raises(ValueError, match=r"invalid|key"):
            storage.append("/bad/", np.zeros((2, 3), np.float32))
        assert snapshot(path) == before
        np.testing.assert_array_equal(storage["a"], np.zeros((2, 3), np.float32))


def test_append_on_a_read_only_storage_is_no_data_target(tmp_path: Path, big: Big) -> None:
    path = tmp_path / f"ro{big.suffix}"
    with big.open(path, "w") as storage:
        storage.append("a", np.zeros(3))
    with big.open(path, "r") as storage, pytest.raises(NoDataTarget):
        storage.append("a", np.zeros(3))
    storage = big.open(path, "a")
    storage.close()
    with pytest.raises(ValueError, match="closed"):
        storage.append("a", np.zeros(3))


def test_a_failed_append_leaves_the_array_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HDF5Storage(tmp_path / "f.h5", "w") as storage:
        storage.append("a", np.arange(10.0))

        def fail() -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(storage.io, "flush", fail)
        with pytest.raises(OSError, match="space"):
            storage.append("a", np.arange(5.0))
        monkeypatch.undo()
        np.testing.assert_array_equal(storage["a"], np.arange(10.0))
        assert storage.append("a", np.arange(2.0)) == (12,)


# ------------------------------------------------------------------------------ lazy reads


def test_lazy_returns_the_tree_with_lazy_arrays(tmp_path: Path, big: Big) -> None:
    maps = _maps(32)
    with big.open(tmp_path / f"l{big.suffix}", "w", "tree", compression="gzip") as storage:
        storage.write(
            {"maps": maps, "n": 3, "label": "x", "s": np.array(["a"]), "v": (np.arange(3),)}
        )
        tree = storage.lazy()
        assert list(storage.lazy("tree")) == list(tree) == ["maps", "n", "label", "s", "v"]
        lazy = tree["maps"]
        assert isinstance(lazy, LazyArray)
        assert isinstance(tree["v"][0], LazyArray)
        assert tree["n"] == 3 and tree["label"] == "x"
        np.testing.assert_array_equal(tree["s"], np.array(["a"]))
        assert lazy.shape == maps.shape and lazy.dtype == maps.dtype
        assert (lazy.ndim, lazy.size, lazy.nbytes, len(lazy)) == (
            4,
            maps.size,
            maps.nbytes,
            32,
        )
        assert lazy.chunks is not None and lazy.compression == "gzip"
        np.testing.assert_array_equal(np.asarray(lazy), maps)
        np.testing.assert_array_equal(lazy[3:7], maps[3:7])
        assert lazy[1, 2, 3, 4] == maps[1, 2, 3, 4]


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i2", ">u4", "|b1", "<c16", ">c8", "|i1"])
def test_lazy_reads_every_numeric_dtype_as_read_does(tmp_path: Path, big: Big, dtype: str) -> None:
    array = (np.arange(-30, 30) % 7).astype(dtype).reshape(20, 3)
    with big.open(tmp_path / f"t{big.suffix}", "w") as storage:
        storage["whole"] = array
        storage.append("grown", array[:5])
        storage.append("grown", array[5:])
        for key in ("whole", "grown"):
            lazy = storage.lazy(key)
            assert isinstance(lazy, LazyArray) and lazy.dtype == np.dtype(dtype)
            block = lazy[4:9:2]
            assert block.dtype == np.dtype(dtype) == storage[key].dtype
            np.testing.assert_array_equal(block, array[4:9:2])


_INDICES: list[Any] = [
    0,
    -1,
    slice(None),
    slice(2, 9),
    slice(None, None, -1),
    slice(9, 2, -3),
    slice(5, 5),
    slice(-100, 100, 7),
    (Ellipsis, 1),
    (1, Ellipsis, slice(None, None, 2)),
    (None, slice(1, 3), None, 2),
    (slice(3, 1), 0),
    (np.int64(3), slice(0, 2), -1),
    (),
    Ellipsis,
]


@pytest.mark.parametrize("index", _INDICES)
def test_lazy_indexing_is_numpy_basic_indexing(tmp_path: Path, big: Big, index: Any) -> None:
    array = np.arange(12 * 5 * 4, dtype=np.int32).reshape(12, 5, 4)
    with big.open(tmp_path / f"i{big.suffix}", "w") as storage:
        storage.append("a", array)
        lazy = storage.lazy("a")
        expected = array[index]
        got = lazy[index]
        np.testing.assert_array_equal(got, expected)
        assert np.shape(got) == np.shape(expected)


@pytest.mark.parametrize(
    ("index", "error"),
    [
        (12, IndexError),
        (-13, IndexError),
        ((0, 0, 0, 0), IndexError),
        ((Ellipsis, Ellipsis), IndexError),
        ([0, 1], TypeError),
        (np.array([0, 1]), TypeError),
        (True, TypeError),
        ("a", TypeError),
    ],
)
def test_lazy_refuses_what_basic_indexing_refuses(
    tmp_path: Path, big: Big, index: Any, error: type[Exception]
) -> None:
    with big.open(tmp_path / f"i{big.suffix}", "w") as storage:
        storage["a"] = np.zeros((12, 5, 4))
        with pytest.raises(error):
            storage.lazy("a")[index]


def test_a_slice_reads_only_the_chunks_it_needs(tmp_path: Path) -> None:
    rows = np.arange(200 * 65536, dtype=np.float32).reshape(200, 65536)  # 256 KiB rows
    with HDF5Storage(tmp_path / "s.h5", "w", compression="lzf") as storage:
        storage["a"] = rows
        lazy = storage.lazy("a")
        assert lazy.chunks == (4, 65536)
        # The bytes HDF5 reads from the (journaled) file for the slice.
        reads: list[int] = []
        real_readinto = JournaledFile.readinto

        def spy(self: JournaledFile, buffer: Any) -> int:
            reads.append(len(memoryview(buffer)))
            return real_readinto(self, buffer)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(JournaledFile, "readinto", spy)
            np.testing.assert_array_equal(lazy[41:43], rows[41:43])
        # One chunk of 4 rows (compressed), and a little metadata: not the 50 MiB array.
        assert 0 < sum(reads) <= 4 * rows[0].nbytes + 65536


def test_a_lazy_array_is_read_only_and_dies_with_its_storage(tmp_path: Path, big: Big) -> None:
    storage = big.open(tmp_path / f"d{big.suffix}", "w")
    storage["a"] = np.arange(10.0)
    lazy = storage.lazy("a")
    with pytest.raises(TypeError, match="read-only"):
        lazy[0] = 1.0
    view = storage.at(data_key="a").lazy()
    storage.close()
    for use in (
        lambda: lazy[0],
        lambda: np.asarray(lazy),
        lambda: lazy.shape,
        lambda: len(lazy),
        lambda: view[1:3],
    ):
        with pytest.raises(ValueError, match="closed"):
            use()
    with pytest.raises(ValueError, match="closed"):
        storage.lazy("a")
    assert f"d{big.suffix}" in repr(lazy)


def test_lazy_of_a_missing_key_is_no_data_source(tmp_path: Path, big: Big) -> None:
    with big.open(tmp_path / f"m{big.suffix}", "w") as storage:
        with pytest.raises(NoDataSource, match="nope"):
            storage.lazy("nope")
        with pytest.raises(TypeError, match="data_key"):
            storage.lazy()


def test_lazy_arrays_work_with_dask(tmp_path: Path, big: Big) -> None:
    array = np.arange(100 * 6, dtype=np.float64).reshape(100, 6)
    with big.open(tmp_path / f"k{big.suffix}", "w") as storage:
        storage.append("a", array)
        lazy = storage.lazy("a")
        # dask ships no type information: reached through a module object.
        from_array = importlib.import_module("dask.array").from_array
        chunked = from_array(lazy, chunks=(10, 6))
        assert float(chunked.sum().compute()) == float(array.sum())
        np.testing.assert_array_equal(chunked[5:25:3].compute(), array[5:25:3])


def test_lazy_leaves_are_not_counted_against_the_read_limit(tmp_path: Path) -> None:
    with HDF5Storage(tmp_path / "b.h5", "w", compression="gzip") as storage:
        storage["z"] = np.zeros((1024, 1024))  # 8 MiB that compress to almost nothing
        storage.max_read_bytes = 1 << 20
        with pytest.raises(ValueError, match="max_read_bytes"):
            storage["z"]
        lazy = storage.lazy("z")
        np.testing.assert_array_equal(lazy[:2], np.zeros((2, 1024)))


# ---------------------------------------------------------------------------------- inspect


def test_inspect_shows_chunks_compression_and_stored_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "inspect.h5"
    with HDF5Storage(path, "w", compression="gzip") as storage:
        storage["maps"] = np.zeros((64, 3, 32, 32), np.float32)
        storage.append("grown", np.ones((5, 100)))
        storage.at(data_key="plain").write({"x": np.arange(1000.0)}, compression=None)
    assert main(["inspect", str(path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "chunks (64, 3, 32, 32), gzip" in lines["maps"]
    assert "768.0 KiB" in lines["maps"] and "stored (" in lines["maps"]
    assert "grows to (any, 100)" in lines["grown"]
    assert "chunks" not in lines["x"]
    assert main(["inspect", "--json", str(path)]) == 0
    described = json.loads(capsys.readouterr().out)
    maps = next(entry for entry in described["entries"] if entry["name"] == "maps")
    assert maps["chunks"] == [64, 3, 32, 32] and maps["compression"] == "gzip"
    assert maps["maxshape"] is None
    assert 0 < maps["stored_bytes"] < maps["nbytes"] == 64 * 3 * 32 * 32 * 4
    grown = next(entry for entry in described["entries"] if entry["name"] == "grown")
    assert grown["maxshape"] == [None, 100]
