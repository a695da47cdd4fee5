"""Zarr stores written elsewhere: every read ends quickly with a value or a documented error.

Each crafted store starts as one written by ZarrStorage; its metadata documents are then edited
as an attacker (or a buggy program) could. A read must raise NoDataSource or UnreadableNodeError
naming the node, without following names out of the store, reading a member twice, recursing
without bound, allocating what the store does not hold, or blocking on a special file.
"""

import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corelay.io.describe import describe_file, find_problems
from corelay.io.errors import NoDataSource, UnreadableNodeError
from corelay.io.storage import ZarrStorage
from tests.memory import traced_peak

pytest.importorskip("zarr")

_FUZZ_EXAMPLES = int(os.environ.get("CORELAY_FUZZ_EXAMPLES", "100"))
_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

Document = dict[str, Any]


def _store(tmp_path: Path, tree: Any) -> tuple[Path, str]:
    """A store with ``tree`` at the key ``'k'``, and the store path of the key's value."""
    path = tmp_path / "s.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["k"] = tree
    version = _doc(path, "k")["attributes"]["corelay.value"]
    return path, f"k/{version}"


def _doc(store: Path, node: str) -> Document:
    return cast(Document, json.loads((store / node / "zarr.json").read_text()))


def _put(store: Path, node: str, document: Document) -> None:
    (store / node).mkdir(parents=True, exist_ok=True)
    (store / node / "zarr.json").write_text(json.dumps(document))


def _edit(store: Path, node: str, change: Callable[[Document], None]) -> None:
    document = _doc(store, node)
    change(document)
    _put(store, node, document)


def _group(**attributes: Any) -> Document:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def _read(store: Path, key: str = "k") -> Any:
    with ZarrStorage(store, "r") as storage:
        return storage[key]


def _refused(store: Path, match: str) -> None:
    """Reading refuses the store quickly, with the message ``match``, and so do the CLI checks."""
    started = time.monotonic()
    with pytest.raises(UnreadableNodeError, match=match):
        _read(store)
    problems = find_problems(describe_file(store))
    assert any(match in str(problem) for problem in problems), problems
    assert time.monotonic() - started < 10


def _set_attribute(name: str, value: Any) -> Callable[[Document], None]:
    def change(document: Document) -> None:
        document["attributes"][name] = value

    return change


@pytest.mark.parametrize("pointer", ["", "..", ".corelay-tmp-", "x", ".corelay-tmp-a/b", 7, None])
def test_a_key_pointing_at_no_value_is_refused(tmp_path: Path, pointer: object) -> None:
    store, _ = _store(tmp_path, [1])
    _edit(store, "k", _set_attribute("corelay.value", pointer))
    _refused(store, "not at a value")


def test_a_key_whose_value_is_a_key_is_refused(tmp_path: Path) -> None:
    store, value = _store(tmp_path, [1])
    _put(store, value, _group(**{"corelay.kind": "key", "corelay.value": ".corelay-tmp-aa"}))
    _put(store, f"{value}/.corelay-tmp-aa", _group(**{"corelay.kind": "int", "corelay.value": 1}))
    _refused(store, "a key's value is another key")


@pytest.mark.parametrize(
    "keys",
    [["../../.."], ["a/b"], [""], ["."], [1], "a", {"a": 1}, ["a\x00"]],
    ids=["dotdot", "slash", "empty", "dot", "int", "str", "dict", "nul"],
)
def test_dict_keys_that_are_not_member_names_are_refused(tmp_path: Path, keys: object) -> None:
    store, value = _store(tmp_path, {"a": 1})
    _edit(store, value, _set_attribute("corelay.keys", keys))
    with pytest.raises(UnreadableNodeError, match=r"corelay\.keys"):
        _read(store)


def test_a_member_named_twice_is_refused_before_any_exponential_read(tmp_path: Path) -> None:
    # 40 levels of a dict naming its one member 50 times: 50**40 reads if followed.
    store, value = _store(tmp_path, {"x": 1})
    node = value
    for _ in range(40):
        _put(store, node, _group(**{"corelay.kind": "dict", "corelay.keys": ["x"] * 50}))
        node += "/x"
    _refused(store, "names a member twice")


@pytest.mark.parametrize("length", [-1, True, "2", 2.0, None])
def test_lengths_that_are_not_lengths_are_refused(tmp_path: Path, length: object) -> None:
    store, value = _store(tmp_path, [1, 2])
    _edit(store, value, _set_attribute("corelay.length", length))
    _refused(store, "not a length")


def test_a_length_of_billions_is_a_missing_item_at_once(tmp_path: Path) -> None:
    store, value = _store(tmp_path, [1, 2])
    _edit(store, value, _set_attribute("corelay.length", 10**12))
    started = time.monotonic()
    # Items are requested in concurrent batches: whichever missing one answers first is named.
    with pytest.raises(NoDataSource, match=r"/\d+'"):
        _read(store)
    assert "has no item 2" in str(find_problems(describe_file(store)))
    assert time.monotonic() - started < 10


def _nest(store: Path, node: str, levels: int, **attributes: Any) -> None:
    for _ in range(levels):
        _put(store, node, _group(**attributes))
        node += "/x"
    _put(store, node, _group(**{"corelay.kind": "int", "corelay.value": 1}))


@pytest.mark.parametrize(
    "attributes",
    [{"corelay.kind": "dict", "corelay.keys": ["x"]}, {}],
    ids=["dicts", "plain-groups"],
)
def test_containers_deeper_than_the_limit_are_refused(
    tmp_path: Path, attributes: dict[str, Any]
) -> None:
    store, value = _store(tmp_path, {"x": 1})
    _nest(store, value, 150, **attributes)
    _refused(store, "MAX_DEPTH")


def test_containers_at_the_limit_read(tmp_path: Path) -> None:
    tree: Any = 1
    for _ in range(100):
        tree = [tree]
    store, _ = _store(tmp_path, tree)
    assert _read(store) == tree


@pytest.mark.parametrize(
    ("kind", "value", "match"),
    [
        ("int", "12", "not a int value"),
        ("int", True, "not a int value"),
        ("bool", 1, "not a bool value"),
        ("float", "zz", "not a float value"),
        ("float", 1.5, "not a float value"),
        ("complex", ["00"], "not a complex value"),
        ("bytes", "***", "not a bytes value"),
        ("str", ["a"], "not a str value"),
        ("weird", 1, "unknown corelay.kind 'weird'"),
    ],
)
def test_scalars_that_do_not_hold_their_kind_are_refused(
    tmp_path: Path, kind: str, value: object, match: str
) -> None:
    store, node = _store(tmp_path, 5)
    _put(store, node, _group(**{"corelay.kind": kind, "corelay.value": value}))
    with pytest.raises(UnreadableNodeError, match=match):
        _read(store)


@pytest.mark.parametrize(
    ("dtype", "match"),
    [("O", "object dtype"), ("garbage", "invalid dtype"), ("<U3", "is not"), ("S3", "is not")],
)
def test_dtype_attributes_that_do_not_fit_the_data_are_refused(
    tmp_path: Path, dtype: str, match: str
) -> None:
    store, node = _store(tmp_path, np.arange(4.0))
    _edit(store, node, _set_attribute("corelay.dtype", dtype))
    with pytest.raises(UnreadableNodeError, match=match):
        _read(store)


def test_an_array_of_unknown_kind_is_refused(tmp_path: Path) -> None:
    store, node = _store(tmp_path, np.arange(4))
    _edit(store, node, _set_attribute("corelay.kind", "dict"))
    with pytest.raises(UnreadableNodeError, match=r"unknown corelay\.kind 'dict' of an array"):
        _read(store)


def test_chunks_that_do_not_decode_are_refused(tmp_path: Path) -> None:
    store, node = _store(tmp_path, np.arange(1000))
    chunk = next(path for path in (store / node / "c").rglob("*") if path.is_file())
    chunk.write_bytes(b"not zstd at all" * 10)
    with pytest.raises(UnreadableNodeError, match="not a zstd frame"):
        _read(store)


def _declare_shape(store: Path, node: str, shape: list[int], chunks: list[int]) -> None:
    def change(document: Document) -> None:
        document["shape"] = shape
        document["chunk_grid"]["configuration"]["chunk_shape"] = chunks

    _edit(store, node, change)


def test_an_array_declaring_billions_of_chunks_is_refused_before_reading(tmp_path: Path) -> None:
    store, node = _store(tmp_path, np.arange(4))
    _declare_shape(store, node, [10**11], [4])
    _refused(store, "declares 25000000000 chunks")


def test_declared_sizes_are_checked_before_allocating(tmp_path: Path) -> None:
    store, node = _store(tmp_path, np.arange(4, dtype=np.int64))
    _declare_shape(store, node, [2**28], [2**28])  # 2 GiB in one chunk the store lacks
    with traced_peak() as peak, pytest.raises(UnreadableNodeError, match="max_read_bytes"):
        _read(store)
    assert peak.bytes < 16 * 2**20


def test_the_limit_counts_what_arrays_declare_beyond_what_is_stored(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 2**63, 2**20, dtype=np.int64)  # 8 MiB
    zeros = np.zeros(2**20, dtype=np.int64)  # 8 MiB declared, a few KiB stored
    path = tmp_path / "s.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["noise"] = noise
        storage["zeros"] = zeros
    with ZarrStorage(path, "r") as storage:
        storage.max_read_bytes = 2**20
        np.testing.assert_array_equal(storage["noise"], noise)  # stored, so not counted
        with pytest.raises(UnreadableNodeError, match="max_read_bytes = 1048576"):
            storage["zeros"]
        storage.max_read_bytes = 16 * 2**20
        np.testing.assert_array_equal(storage["zeros"], zeros)


def test_a_symbolic_link_to_a_file_outside_is_not_followed(tmp_path: Path) -> None:
    store, node = _store(tmp_path, {"a": np.arange(3)})
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(_group(**{"corelay.kind": "str", "corelay.value": "secret"})))
    (store / node / "a" / "zarr.json").unlink()
    (store / node / "a" / "zarr.json").symlink_to(outside)
    _refused(store, "symbolic link")


def test_a_symbolic_link_to_a_directory_outside_is_not_followed(tmp_path: Path) -> None:
    store, node = _store(tmp_path, {"a": np.arange(3)})
    outside = tmp_path / "outside"
    (store / node / "a").rename(outside)
    (store / node / "a").symlink_to(outside)
    _refused(store, "symbolic link")


def test_writes_and_deletes_do_not_reach_through_a_linked_directory(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["k/a"] = 1
    outside = tmp_path / "outside"
    (path / "k").rename(outside)
    (path / "k").symlink_to(outside)
    before = sorted(str(p) for p in outside.rglob("*"))
    with ZarrStorage(path, "a") as storage:
        with pytest.raises(UnreadableNodeError, match="symbolic link"):
            storage["k/b"] = 2
        with pytest.raises(UnreadableNodeError, match="symbolic link"):
            del storage["k/a"]
    assert sorted(str(p) for p in outside.rglob("*")) == before


_READ_FIFO = """
import sys
from corelay.io.storage import ZarrStorage
try:
    with ZarrStorage(sys.argv[1], "r") as storage:
        storage["k"]
except ValueError as error:
    print("refused:", error)
"""


@pytest.mark.parametrize("where", ["metadata", "chunk"])
def test_a_fifo_in_the_store_is_refused_at_once(tmp_path: Path, where: str) -> None:
    store, node = _store(tmp_path, {"a": np.arange(3)})
    target = (
        store / node / "a" / "zarr.json"
        if where == "metadata"
        else next(path for path in (store / node / "a" / "c").rglob("*") if path.is_file())
    )
    target.unlink()
    os.mkfifo(target)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _READ_FIFO, str(store)],
        env=_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 30
    assert "refused:" in done.stdout and "not a regular file" in done.stdout, done.stderr
    if where == "chunk":
        return  # validate reads metadata documents only
    cli = subprocess.run(
        [sys.executable, "-m", "corelay.io", "validate", str(store)],
        env=_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode != 0
    assert "Traceback" not in cli.stderr


# ---------------------------------------------------------------------------------------------
# Any edit of any metadata document


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
_ATTRIBUTES = ["corelay.kind", "corelay.keys", "corelay.length", "corelay.value", "corelay.dtype"]
_FIELDS = ["shape", "data_type", "chunk_grid", "codecs", "fill_value", "node_type", "zarr_format"]
_TREE = {
    "a": [1, 2.5, "x", b"y", None],
    "b": (np.arange(6).reshape(2, 3), np.array(["u", "vw"])),
    "c": {"d": np.float32(1.5), "e": True},
}


@settings(
    max_examples=_FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_edited_documents_give_a_value_or_a_documented_error(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Every outcome of reading and describing an edited store is a value or a documented error."""
    store, _ = _store(tmp_path_factory.mktemp("fuzz"), _TREE)
    documents = sorted(str(path.parent.relative_to(store)) for path in store.rglob("zarr.json"))
    for _ in range(data.draw(st.integers(1, 3))):
        node = data.draw(st.sampled_from(documents))
        document: object = json.loads((store / node / "zarr.json").read_text())
        action = data.draw(st.sampled_from(["attribute", "field", "whole"]))
        if action == "whole" or not isinstance(document, dict):
            document = data.draw(_JSON)
        elif action == "attribute":
            attributes = cast(Document, document).get("attributes")
            if isinstance(attributes, dict):
                name = data.draw(st.sampled_from(_ATTRIBUTES))
                cast(Document, attributes)[name] = data.draw(_JSON)
        else:
            cast(Document, document)[data.draw(st.sampled_from(_FIELDS))] = data.draw(_JSON)
        (store / node / "zarr.json").write_text(json.dumps(document))
    started = time.monotonic()
    with contextlib.suppress(NoDataSource, UnreadableNodeError, FileNotFoundError):
        _read(store)
    with contextlib.suppress(FileNotFoundError, UnreadableNodeError):
        find_problems(describe_file(store))
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------------------------------
# Decompression bombs: chunks decoded only up to what their array declares


def _chunk_files(array: Path) -> list[Path]:
    return sorted(path for path in array.rglob("*") if path.is_file() and path.name != "zarr.json")


def _zstd_frame_without_content_size(payload: bytes) -> bytes:
    # A frame header with no content size (not single-segment, the smallest window), one raw
    # last block: valid zstd, but nothing says how big it is before decoding.
    block = (len(payload) << 3 | 1).to_bytes(3, "little")
    return (0xFD2FB528).to_bytes(4, "little") + bytes([0x00, 0x00]) + block + payload


_PLAIN_ZARR = """
import sys
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

root = zarr.open_group(sys.argv[1], mode="w")
data = np.arange(10_000, dtype=np.float64).reshape(100, 100)
root.create_array("zstd", data=data, chunks=(10, 100), compressors=ZstdCodec())
root.create_array("gzip", data=data, chunks=(10, 100), compressors=GzipCodec())
root.create_array("blosc", data=data, chunks=(10, 100), compressors=BloscCodec())
root.create_array("none", data=data, chunks=(10, 100), compressors=None)
root.create_array("sharded", data=data, chunks=(10, 10), shards=(50, 100))
root.create_array("checked", data=data, chunks=(10, 100), compressors=[ZstdCodec(), Crc32cCodec()])
# 256 MiB of ones in one chunk of each compressor: a few KiB each (gzip: 256 KiB).
big = {"shape": (2**28,), "dtype": "uint8", "chunks": (2**28,)}
root.create_array("bomb-zstd", **big, compressors=ZstdCodec(level=19))[:] = 1
root.create_array("bomb-gzip", **big, compressors=GzipCodec(level=9))[:] = 1
root.create_array("bomb-blosc", **big, compressors=BloscCodec())[:] = 1
root.create_array("big", **big, shards=(2**28,))[:] = 1
root.create_array("small", shape=(4,), dtype="uint8", chunks=(4,), shards=(4,))[:] = 1
"""


@pytest.fixture(scope="module")
def plain_zarr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store written by plain zarr: one array per codec, and chunks that decompress to 256 MiB."""
    path = tmp_path_factory.mktemp("plain") / "plain.zarr"
    subprocess.run(
        [sys.executable, "-c", _PLAIN_ZARR, str(path)], env=_ENV, check=True, timeout=300
    )
    return path


@pytest.mark.parametrize("compression", ["zstd", "gzip", "zstd-undeclared", "blosc"])
def test_a_chunk_decompressing_beyond_its_array_is_refused_before_allocating(
    tmp_path: Path, plain_zarr: Path, compression: str
) -> None:
    store = tmp_path / "s.zarr"
    with ZarrStorage(
        store, "w", compression="gzip" if compression == "gzip" else "zstd"
    ) as storage:
        storage["k"] = np.arange(4)
    node = f"k/{_doc(store, 'k')['attributes']['corelay.value']}"
    if compression == "blosc":
        blosc = _doc(plain_zarr, "blosc")["codecs"]
        _edit(store, node, lambda document: document.update(codecs=blosc))
    if compression == "zstd-undeclared":
        bomb = _zstd_frame_without_content_size(bytes(64))
    else:
        bomb = _chunk_files(plain_zarr / f"bomb-{compression}")[0].read_bytes()
    _chunk_files(store / node)[0].write_bytes(bomb)
    with (
        traced_peak() as peak,
        pytest.raises(UnreadableNodeError, match=f"{node}: a .* chunk decompresses to"),
    ):
        _read(store)
    assert peak.bytes < 16 * 2**20


def test_plain_zarr_arrays_of_every_codec_it_writes_read(plain_zarr: Path) -> None:
    data = np.arange(10_000, dtype=np.float64).reshape(100, 100)
    with ZarrStorage(plain_zarr, "r") as storage:
        for name in ("zstd", "gzip", "blosc", "none", "sharded", "checked"):
            np.testing.assert_array_equal(storage[name], data)


def test_an_inner_chunk_of_a_shard_decompressing_beyond_its_array_is_refused(
    tmp_path: Path, plain_zarr: Path
) -> None:
    store = tmp_path / "plain.zarr"
    shutil.copytree(plain_zarr, store)
    shard, target = (_chunk_files(store / name)[0] for name in ("big", "small"))
    target.write_bytes(shard.read_bytes())  # one inner chunk, at the same place in the index
    with (
        ZarrStorage(store, "r") as storage,
        pytest.raises(UnreadableNodeError, match="small: a zstd chunk decompresses to"),
    ):
        storage["small"]


@pytest.mark.parametrize("lazy", [False, True])
def test_a_chunk_shape_far_beyond_a_small_array_is_bounded_by_the_limit(
    tmp_path: Path, lazy: bool
) -> None:
    store, node = _store(tmp_path, np.arange(4.0))
    # A 4-element array whose chunks hold 2**22 float64 (32 MiB): a chunk is decoded whole.
    _edit(store, node, lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[2**22]))
    data = np.zeros(2**22)
    data[:4] = np.arange(4.0)
    frame = bytes(importlib.import_module("numcodecs").Zstd().encode(data.tobytes()))
    for chunk in _chunk_files(store / node):
        chunk.unlink()
    (store / node / "c" / "0").write_bytes(frame)
    assert len(frame) < 2**20
    with ZarrStorage(store, "r") as storage:
        storage.max_read_bytes = 2**20
        with (
            traced_peak() as peak,
            pytest.raises(UnreadableNodeError, match=f"{node}: a chunk of shape .* decodes"),
        ):
            storage.lazy("k")[:2] if lazy else storage["k"]
        assert peak.bytes < 8 * 2**20
        storage.max_read_bytes = 64 * 2**20
        np.testing.assert_array_equal(storage.lazy("k")[:] if lazy else storage["k"], data[:4])
