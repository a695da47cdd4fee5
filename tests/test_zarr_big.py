"""Big arrays in ZarrStorage, beyond what test_big_arrays runs for every format: how appends
are committed, lazy arrays whose key is replaced, other processes, and S3.

``CORELAY_LIVE_READ_SECONDS`` sets how long the reader beside an appender reads (2 s by default).
"""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zarr.abc.store import Store

from corelay.io.errors import UnreadableNodeError
from corelay.io.storage import LazyArray, NoDataSource, ZarrStorage
from tests.seaweed import S3Server, prefix_of
from tests.test_kill import batch, check_whole_batches, start_appender

_ROOT = Path(__file__).parent.parent


def _value_path(path: Path, key: str) -> Path:
    """The directory of the value the key ``key`` points at."""
    pointer = json.loads((path / key / "zarr.json").read_text())
    name: str = pointer["attributes"]["corelay.value"]
    return path / key / name


def _plain_zarr(script: str, *args: str) -> str:
    """Runs ``script`` (which imports zarr, never this package) and returns what it printed."""
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    ).stdout


def _spy_sets(
    monkeypatch: pytest.MonkeyPatch, store: Store, fail_at: int | None = None
) -> list[str]:
    """Records the keys ``store`` writes, in order; with ``fail_at``, the metadata document
    write of that index (0 for the first) fails as a full disk would."""
    written: list[str] = []
    real_set = store.set

    async def spy(key: str, value: Any) -> None:
        documents = sum(1 for done in written if done.endswith("zarr.json"))
        written.append(key)
        if key.endswith("zarr.json") and documents == fail_at:
            raise OSError(28, "No space left on device")
        await real_set(key, value)

    monkeypatch.setattr(store, "set", spy)
    return written


def test_appended_arrays_are_plain_zarr_arrays_chunked_for_growth(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    rows = np.arange(3 * 1024, dtype=np.float64).reshape(3, 1024)  # rows of 8 KiB
    with ZarrStorage(path, "w", compression="gzip") as storage:
        storage.append("maps", rows)
        storage.append("maps", rows)
    script = (
        "import sys, zarr, numpy as np\n"
        "a = zarr.open_array(sys.argv[1], mode='r')\n"
        "print(a.chunks, a.shape, a.attrs['corelay.appendable'],"
        " [type(c).__name__ for c in a.compressors], float(np.asarray(a[...]).sum()))\n"
        "assert not any(m.startswith('corelay') for m in sys.modules)\n"
    )
    printed = _plain_zarr(script, str(_value_path(path, "maps")))
    # About 4 MiB of rows per chunk, whatever the first batch's length.
    total = float(2 * rows.sum())
    assert printed.split("\n")[0] == f"(512, 1024) (6, 1024) True ['GzipCodec'] {total}"


def test_a_batch_is_committed_by_the_array_metadata_written_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ZarrStorage(tmp_path / "c.zarr", "w") as storage:
        storage.append("a", np.zeros((3, 4)))
        written = _spy_sets(monkeypatch, storage.io)
        storage.append("a", np.ones((600_000, 4)))  # chunks of 131072 rows: several chunks
    assert len(written) > 2
    assert written[-1].endswith("/zarr.json")
    assert not any(key.endswith("zarr.json") for key in written[:-1])


def test_a_failed_append_leaves_the_array_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.zarr"
    with ZarrStorage(path, "w") as storage:
        storage.append("a", np.arange(10.0))
        with monkeypatch.context() as patch:
            written = _spy_sets(patch, storage.io, fail_at=0)
            with pytest.raises(OSError, match="space"):
                storage.append("a", np.arange(5.0))  # its chunks written, not its shape
            assert len(written) == 2
        np.testing.assert_array_equal(storage["a"], np.arange(10.0))
        with monkeypatch.context() as patch:
            # The array is written whole, then its key's pointer fails.
            written = _spy_sets(patch, storage.io, fail_at=1)
            with pytest.raises(OSError, match="space"):
                storage.append("new", np.arange(5.0))  # the first append of a key
            assert written[-1] == "new/zarr.json"
        assert "new" not in storage
        assert not list((path / "new").glob(".corelay-tmp-*"))  # the value was deleted
        assert storage.append("a", np.arange(2.0)) == (12,)
        np.testing.assert_array_equal(storage["a"], np.r_[np.arange(10.0), np.arange(2.0)])
        assert storage.append("new", np.arange(5.0)) == (5,)
    assert len(list((path / "new").glob(".corelay-tmp-*"))) == 1


def test_a_slice_reads_only_the_chunks_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = np.arange(200 * 65536, dtype=np.float32).reshape(200, 65536)  # 256 KiB rows
    with ZarrStorage(tmp_path / "s.zarr", "w") as storage:
        storage["a"] = rows
        lazy = storage.lazy("a")
        assert lazy.chunks == (16, 65536)
        read: list[str] = []
        real_get = storage.io.get

        async def spy(key: str, *args: Any, **kwargs: Any) -> Any:
            read.append(key)
            return await real_get(key, *args, **kwargs)

        monkeypatch.setattr(storage.io, "get", spy)
        np.testing.assert_array_equal(lazy[41:43], rows[41:43])
        chunks = [key for key in read if not key.endswith("zarr.json")]
        assert len(chunks) == 1 and chunks[0].endswith("/c/2/0")
        assert read[-1] == "a/zarr.json"  # the key's pointer, read again after the block


def test_a_lazy_array_of_a_replaced_or_deleted_key_refuses_to_read(tmp_path: Path) -> None:
    with ZarrStorage(tmp_path / "r.zarr", "w") as storage:
        storage["k"] = {"maps": np.ones((100, 10)), "n": 1}
        storage["d"] = np.ones(1000)
        tree = storage.lazy("k")
        lazy = storage.lazy("d")
        np.testing.assert_array_equal(tree["maps"][5:7], np.ones((2, 10)))
        storage["k"] = {"maps": np.full((100, 10), 2.0), "n": 2}
        with pytest.raises(NoDataSource, match=r"'k/maps'.*replaced"):
            tree["maps"][5:7]  # the old chunks are gone: not zeros, an error
        assert tree["maps"].shape == (100, 10)  # what it knows without reading stays
        np.testing.assert_array_equal(storage.lazy("k")["maps"][5:7], np.full((2, 10), 2.0))
        del storage["d"]
        with pytest.raises(NoDataSource, match="deleted"):
            np.asarray(lazy)


def test_a_lazy_array_refuses_a_key_replaced_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["k"] = np.ones((50, 8))
    with ZarrStorage(path, "r") as storage:
        lazy = storage.lazy("k")
        np.testing.assert_array_equal(lazy[:2], np.ones((2, 8)))
        script = (
            "import sys, numpy as np\n"
            "from corelay.io.storage import ZarrStorage\n"
            "with ZarrStorage(sys.argv[1], 'a') as s:\n"
            "    s['k'] = np.zeros((50, 8))\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env)
        with pytest.raises(NoDataSource, match="replaced"):
            lazy[:2]
        np.testing.assert_array_equal(storage["k"], np.zeros((50, 8)))


def test_a_lazy_array_keeps_its_shape_while_the_array_grows(tmp_path: Path) -> None:
    with ZarrStorage(tmp_path / "g.zarr", "w") as storage:
        storage.append("a", np.arange(10).reshape(5, 2))
        lazy = storage.lazy("a")
        storage.append("a", np.arange(10, 16).reshape(3, 2))
        assert lazy.shape == (5, 2)
        np.testing.assert_array_equal(np.asarray(lazy), np.arange(10).reshape(5, 2))
        np.testing.assert_array_equal(storage.lazy("a")[5:], np.arange(10, 16).reshape(3, 2))


def test_lazy_reads_nested_keys_and_arrays_of_other_programs(tmp_path: Path) -> None:
    path = tmp_path / "n.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["top/inner"] = np.arange(6.0)
        storage["top/label"] = "x"
    _plain_zarr(
        "import sys, zarr, numpy as np\n"
        "group = zarr.open_group(sys.argv[1], mode='a')\n"
        "group.create_array('plain', data=np.arange(12, dtype=np.int16).reshape(3, 4))\n",
        str(path),
    )
    with ZarrStorage(path, "r") as storage:
        top = storage.lazy("top")
        assert isinstance(top["inner"], LazyArray) and top["label"] == "x"
        np.testing.assert_array_equal(top["inner"][2:4], [2.0, 3.0])
        plain = storage.lazy("plain")
        assert isinstance(plain, LazyArray) and plain.dtype == np.int16
        np.testing.assert_array_equal(plain[1], [4, 5, 6, 7])


def test_a_reader_in_another_process_sees_only_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "live.zarr"
    with ZarrStorage(path, "w"):
        pass
    appender = start_appender(path, "zarr")
    assert appender.stdout is not None
    seen: set[int] = set()
    try:
        while appender.stdout.readline() != "3\n":
            pass
        with ZarrStorage(path, "r") as storage:
            deadline = time.monotonic() + float(os.environ.get("CORELAY_LIVE_READ_SECONDS", "2"))
            while time.monotonic() < deadline:
                maps = storage["maps"]
                seen.add(check_whole_batches(maps))
                lazy = storage.lazy("maps")
                check_whole_batches(lazy[: len(lazy)])
    finally:
        appender.send_signal(signal.SIGKILL)
        appender.wait()
        appender.stdout.close()
    assert len(seen) >= 3  # the reader saw the array grow, batch by batch
    with ZarrStorage(path, "r") as storage:
        assert check_whole_batches(storage["maps"]) >= max(seen)


def test_append_and_lazy_on_s3(s3_server: S3Server, tmp_path: Path) -> None:
    store = s3_server.store(prefix_of(tmp_path))
    with ZarrStorage(store, "w", compression="gzip") as storage:
        for index in range(6):
            storage.append("maps", batch(index))
        maps = storage["maps"]
        kept = check_whole_batches(maps)
        assert kept == 6
        lazy = storage.lazy("maps")
        assert lazy.compression == "gzip" and lazy.shape == maps.shape
        np.testing.assert_array_equal(lazy[60:70], maps[60:70])
        storage["maps"] = np.zeros(3)
        with pytest.raises(NoDataSource, match="replaced"):
            lazy[60:70]
        with pytest.raises(TypeError, match="append"):
            storage.append("maps", np.zeros(3))
    with ZarrStorage(s3_server.store(prefix_of(tmp_path)), "r") as storage:
        np.testing.assert_array_equal(storage["maps"], np.zeros(3))


def test_an_append_writes_the_groups_a_killed_first_append_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.zarr"
    with ZarrStorage(path, "w") as storage:
        with monkeypatch.context() as patch:
            # The first append of 'a/b' stops before the group 'a' is written.
            written = _spy_sets(patch, storage.io, fail_at=2)
            with pytest.raises(OSError, match="space"):
                storage.append("a/b", np.arange(3))
            assert written[-1] == "a/zarr.json"
        assert "a" not in storage
        assert storage.append("a/b", np.arange(3, 5)) == (5,)
        np.testing.assert_array_equal(storage["a/b"], np.arange(5))
        assert list(storage) == ["a"]


# ------------------------------------------------ lazy opens what a read opens, and no more


def _edit_doc(store: Path, node: str, change: dict[str, Any]) -> None:
    """Sets attributes (or, for keys without a dot, fields) of the document of ``node``."""
    document = json.loads((store / node / "zarr.json").read_text())
    for name, value in change.items():
        if "." in name:
            document["attributes"][name] = value
        else:
            document[name] = value
    (store / node).mkdir(parents=True, exist_ok=True)
    (store / node / "zarr.json").write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("node", "change", "match"),
    [
        ("k", {"corelay.value": ".."}, "not at a value"),
        ("k/V", {"corelay.keys": ["maps", "maps"]}, "names a member twice"),
        ("k/V", {"corelay.keys": ["../.."]}, r"corelay\.keys"),
        ("k/V/maps", {"corelay.dtype": "<U3"}, "is not"),
        ("k/V/maps", {"corelay.dtype": "<i4"}, "is not"),
        ("k/V/maps", {"corelay.dtype": "O"}, "object dtype"),
        ("k/V/maps", {"corelay.kind": "dict"}, "unknown corelay.kind"),
    ],
)
def test_lazy_refuses_what_a_read_refuses(
    tmp_path: Path, node: str, change: dict[str, Any], match: str
) -> None:
    path = tmp_path / "h.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["k"] = {"maps": np.arange(40.0).reshape(10, 4)}
    _edit_doc(path, node.replace("V", _value_path(path, "k").name), change)
    with ZarrStorage(path, "r") as storage:
        with pytest.raises(UnreadableNodeError, match=match):
            storage["k"]
        with pytest.raises(UnreadableNodeError, match=match):
            storage.lazy("k")


def test_a_lazy_slice_of_chunks_that_do_not_decode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.zarr"
    with ZarrStorage(path, "w") as storage:
        storage.append("a", np.arange(1000.0).reshape(100, 10))
    chunk = next(p for p in (_value_path(path, "a") / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"not zstd at all" * 10)
    with ZarrStorage(path, "r") as storage:
        lazy = storage.lazy("a")
        with pytest.raises(UnreadableNodeError, match=r"^'a' in .*zstd"):
            lazy[3:5]


def test_a_lazy_slice_of_a_chunk_decompressing_beyond_its_array_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bomb.zarr"
    with ZarrStorage(path, "w") as storage:
        storage.append("a", np.arange(40.0).reshape(10, 4))
    # One zstd frame of 64 MiB of zeros, where a chunk of the array holds 16 KiB at most.
    zstd = importlib.import_module("numcodecs").Zstd()
    bomb = bytes(zstd.encode(bytes(64 << 20)))
    chunk = next(p for p in (_value_path(path, "a") / "c").rglob("*") if p.is_file())
    chunk.write_bytes(bomb)
    with ZarrStorage(path, "r") as storage:
        lazy = storage.lazy("a")
        tracemalloc.start()
        try:
            with pytest.raises(UnreadableNodeError, match=r"^'a' in .*decompresses to"):
                lazy[2:4]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 16 * 2**20
