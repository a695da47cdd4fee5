"""HashedHDF5: pipeline outputs cached in an HDF5 group, keyed by exact hashes of their inputs.

This module holds the entry layout only; the HDF5 format (:mod:`corelay.io._hdf5`) writes and
reads the trees.
"""

import contextlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5o, h5p, h5s, h5t
from h5py._objects import ObjectID

from corelay._typecheck import typechecked
from corelay.io import _hdf5
from corelay.io._hashed_meta import META_GROUP, meta_json_text, store_meta, stored_meta_json, where
from corelay.io._hdf5 import KIND_ATTR
from corelay.io._keys import TEMP_PREFIX
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.hashing import ext_hash
from corelay.io.tree import Node, TreeInput, validate

__all__ = [
    "ENTRY_ATTR",
    "META_GROUP",
    "SHARD_DIGITS",
    "EntryHashes",
    "HashedHDF5",
    "HashedOutput",
    "entry_path",
    "parse_entry_attr",
]

if TYPE_CHECKING:
    HashedOutput: TypeAlias = TreeInput
    """What :class:`HashedHDF5` stores: any stored tree."""
else:
    # HashedHDF5.write checks it node by node and names the path of a bad node.
    HashedOutput = object

#: The attribute that makes an object an entry: ``'input=<hash> output=<hash> meta=<hash>'``, a
#: fixed-length ASCII string, written last.
ENTRY_ATTR = "corelay.hashed_entry"
#: Entries are spread over groups named by the first this many digits of their names.
SHARD_DIGITS = 2

_ENTRY_KEY = ENTRY_ATTR.encode()
_KIND_KEY = KIND_ATTR.encode()
_META_KEY = META_GROUP.encode()
_ENTRY_FIELDS = ("input", "output", "meta")


class EntryHashes(NamedTuple):
    """The hashes an entry's :data:`ENTRY_ATTR` holds."""

    input_hash: str
    """``ext_hash(data_in)``."""
    output_hash: str
    """``ext_hash(data_out)``."""
    meta_hash: str
    """``ext_hash(meta)``: the name of the metadata tree in :data:`META_GROUP`."""


def entry_path(name: str) -> str:
    """The path of the entry ``name`` in the base group: ``'<first digits>/<name>'``."""
    return f"{name[:SHARD_DIGITS]}/{name}"


def parse_entry_attr(value: object) -> EntryHashes | None:
    """The hashes of an :data:`ENTRY_ATTR` value, or ``None`` if it is not one."""
    if isinstance(value, np.bytes_ | bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    fields = [field.partition("=") for field in value.split(" ")]
    if [key for key, _, _ in fields] != list(_ENTRY_FIELDS):
        return None
    return EntryHashes(*(hashed for _, _, hashed in fields))


def _entry_attr(input_hash: str, output_hash: str, meta_hash: str) -> bytes:
    return f"input={input_hash} output={output_hash} meta={meta_hash}".encode("ascii")


_GROUP_CREATE = h5p.create(h5p.GROUP_CREATE)
_GROUP_CREATE.set_obj_track_times(False)
_SCALAR_SPACE = h5s.create(h5s.SCALAR)
_ATTR_TYPES: dict[int, h5t.TypeID] = {}
# Dtypes that validate() accepted: checking an array's dtype is then a set lookup.
_VALID_DTYPES: set[np.dtype[Any]] = set()


def _is_checked_plain_array(value: object) -> bool:
    """Tells whether ``value`` is a plain array of a dtype already validated: no walk needed.

    Such an array is written as the HDF5 format writes it, without a kind attribute, straight
    to one dataset.
    """
    return (
        type(value) is np.ndarray and value.dtype in _VALID_DTYPES and _hdf5.is_plain_array(value)
    )


def _set_entry_attr(entry: ObjectID, value: bytes) -> None:
    attr_type = _ATTR_TYPES.get(len(value))
    if attr_type is None:
        attr_type = _ATTR_TYPES[len(value)] = h5t.py_create(np.dtype(f"S{len(value)}"))
    attr = h5a.create(entry, _ENTRY_KEY, attr_type, _SCALAR_SPACE)
    attr.write(np.array(value), mtype=attr_type)


def _entry_name(input_hash: str, meta_hash: str) -> str:
    return ext_hash((input_hash, meta_hash))


def _open_id(group: ObjectID, path: bytes) -> ObjectID | None:
    try:
        return h5o.open(group, path)
    except KeyError:  # no such member (or group on the way), or a dangling link
        return None


def _complete_entry(base: h5g.GroupID, path: bytes) -> ObjectID | None:
    entry = _open_id(base, path)
    # The attribute, written last, marks a complete entry written by HashedHDF5.
    if entry is not None and h5a.exists(entry, _ENTRY_KEY):
        return entry
    return None


def _find_entry(base: h5py.Group, name: str) -> ObjectID | None:
    entry = _complete_entry(base.id, entry_path(name).encode())
    if entry is None:
        # A writer of a file opened without the journal, killed between unlinking the old entry
        # and moving the new one into place, can leave the new one, complete, under its
        # temporary name.
        entry = _complete_entry(base.id, _temp_path(name))
    return entry


def _temp_path(name: str) -> bytes:
    return f"{name[:SHARD_DIGITS]}/{TEMP_PREFIX}{name}".encode()


_SHARD = re.compile(f"[0-9a-f]{{{SHARD_DIGITS}}}")
_ENTRY_NAME = re.compile(f"(?:{re.escape(TEMP_PREFIX)})?([0-9a-f]{{32}})")


def _shards(base: h5py.Group) -> Iterator[tuple[bytes, h5g.GroupID]]:
    """The shard groups of ``base``: its member groups named by hexadecimal digits."""
    for member in list(base.id):
        if _SHARD.fullmatch(member.decode("utf-8", "replace")):
            group = _open_id(base.id, member)
            if isinstance(group, h5g.GroupID):
                yield member, group


def _exists(base: h5py.Group, path: bytes) -> bool:
    # links.exists needs the groups on the way to exist.
    try:
        return base.id.links.exists(path)
    except RuntimeError as error:
        parent = path.rpartition(b"/")[0].decode()
        raise ValueError(f"{parent!r} in {where(base)} is not a group") from error


def _unlink(group: h5g.GroupID, name: bytes) -> None:
    if group.links.exists(name):
        group.unlink(name)


@typechecked
class HashedHDF5:
    """A cache of pipeline outputs in an HDF5 group, keyed by their input and metadata.

    ``write(data_out, data_in, meta)`` stores ``data_out`` (any stored tree: an array, a tuple of
    arrays, a dict of results, a scalar) as the entry of ``data_in`` and ``meta``;
    ``read(data_in, meta)`` returns it. The entry's name is an exact content hash
    (:func:`~corelay.io.hashing.ext_hash`) of both: any bit difference in a value, dtype or shape
    is another entry, while the memory layout of an array is not (a Fortran-ordered or strided
    copy finds the same entry).

    The entries are ordinary HDF5 objects, readable with plain h5py, in the group given as
    ``base``, sharded by the first two digits of their names; each distinct metadata tree is
    stored once. A write validates everything first, replaces an entry atomically, and flushes
    the file before it returns; open the file with :func:`corelay.io.journal.open_journaled` for
    the write to survive the process being killed. The layout, and how to make writes cheaper,
    are in the documentation ("The layout of a HashedHDF5 group").
    """

    base: h5py.Group
    """The HDF5 group that holds the entries."""

    def __init__(self, h5group: h5py.Group) -> None:
        """Uses ``h5group`` as the store.

        Args:
            h5group: The group that holds (or will hold) the entries. If its file is open
                read-only, :meth:`read` works and :meth:`write` raises :class:`NoDataTarget`.
        """
        self.base = h5group
        # Group.file builds a new File object on every access: looked up once per base, with
        # whether it is writable.
        self._file: tuple[h5py.Group, h5py.File, bool] | None = None

    def entry_name(self, data_in: Any, meta: Any) -> str:
        """Returns the name of the entry for ``data_in`` and ``meta``.

        The entry is at ``<first 2 digits of the name>/<name>`` in :attr:`base`.

        Args:
            data_in: The input: any value :func:`~corelay.io.hashing.ext_hash` accepts.
            meta: The identifying metadata: any value ``ext_hash`` accepts.

        Raises:
            TypeError: ``data_in`` or ``meta`` holds a value ``ext_hash`` does not accept.

        Returns:
            ``ext_hash((ext_hash(data_in), ext_hash(meta)))``: 32 hexadecimal digits.
        """
        return _entry_name(ext_hash(data_in), ext_hash(meta))

    def read(self, data_in: Any, meta: Any) -> Any:
        """Returns the output stored for ``data_in`` and ``meta``.

        Args:
            data_in: The input the output was produced from.
            meta: The identifying metadata it was written with.

        Raises:
            NoDataSource: No complete entry is stored for them: none, an incomplete one, or an
                object of that name not written by HashedHDF5. The message names the entry.
            TypeError: ``data_in`` or ``meta`` holds a value ``ext_hash`` does not accept.
            ValueError: The HDF5 file is closed.

        Returns:
            The output as written: the same tree, as the HDF5 codec reads it back (dicts as
            ``OrderedDict``).
        """
        base = self._open_base()
        name = _entry_name(ext_hash(data_in), ext_hash(meta))
        entry = _find_entry(base, name)
        if entry is None:
            raise NoDataSource(f"no entry {name} for this input and meta in {where(base)}")
        try:
            if isinstance(entry, h5d.DatasetID):
                if not h5a.exists(entry, _KIND_KEY):  # a plain array, the common case
                    return _hdf5.read_array(entry)
                return _hdf5.read_node(h5py.Dataset(entry))
            # A group written here records its kind; one without is not an entry.
            if isinstance(entry, h5g.GroupID) and h5a.exists(entry, _KIND_KEY):
                return _hdf5.read_node(h5py.Group(entry))
            raise KeyError("not an entry written by HashedHDF5")
        except KeyError as error:
            raise NoDataSource(f"incomplete entry {name} in {where(base)}: {error}") from error

    def read_meta(self, meta_hash: str) -> Any:
        """Returns the metadata tree stored under ``meta_hash``.

        Args:
            meta_hash: ``ext_hash(meta)``, as an entry's :data:`ENTRY_ATTR` names it.

        Raises:
            NoDataSource: No metadata of that hash is stored.
            ValueError: ``meta_hash`` is not 32 hexadecimal digits, or the file is closed.

        Returns:
            The metadata as written, with dicts as ``OrderedDict``.
        """
        base = self._open_base()
        if len(meta_hash) != 32 or meta_hash.strip("0123456789abcdef"):
            raise ValueError(f"not a metadata hash: {meta_hash!r}")
        found = _open_id(base.id, _META_KEY + b"/" + meta_hash.encode())
        if isinstance(found, h5d.DatasetID):
            dataset = h5py.Dataset(found)
            text = stored_meta_json(dataset)
            if text is not None:
                return json.loads(text, object_pairs_hook=OrderedDict)
            return _hdf5.read_node(dataset)
        if isinstance(found, h5g.GroupID):
            return _hdf5.read_node(h5py.Group(found))
        raise NoDataSource(f"no metadata {meta_hash} in {where(base)}")

    def write(self, data_out: HashedOutput, data_in: Any, meta: Any) -> None:
        """Stores ``data_out`` as the output produced from ``data_in`` with ``meta``.

        An existing entry for the same input and metadata is replaced, atomically. The file is
        flushed before this returns.

        Args:
            data_out: The output: any stored tree (arrays, NumPy scalars, ``None``, bool, int,
                float, complex, str, bytes, dicts with str keys, tuples and lists of them, at
                any depth).
            data_in: The input: any value :func:`~corelay.io.hashing.ext_hash` accepts.
            meta: Identifying metadata: any stored tree (``None``, bool, int, float, complex,
                str, bytes, NumPy arrays and scalars, dicts with str keys, tuples and lists of
                them). It is hashed into the entry's name and stored once per distinct value,
                to be read back exactly. A value that cannot be stored (a function, a set) is a
                ``TypeError``: storing its repr instead would not read back as the value.

        Raises:
            NoDataTarget: The HDF5 file is open read-only.
            TypeError: ``data_out`` is not a stored tree (an unsupported type or dtype),
                ``meta`` holds a value that cannot be stored, or ``data_in`` one that cannot be
                hashed. The message names the path of the node, for example
                ``data_out[1][0]: ...``. Nothing is written.
            ValueError: The HDF5 file is closed, or ``data_out`` or ``meta`` has an invalid
                dict key (empty, containing ``/``, ``.`` or ``..``). Nothing is written.
        """
        base = self._open_base()
        file = self._writable_file(base)
        # Everything is validated before anything is written.
        node: Node | None = None
        if not _is_checked_plain_array(data_out):
            node = validate(data_out, "data_out")
            if _hdf5.is_plain_array(data_out) and type(data_out) is np.ndarray:
                _VALID_DTYPES.add(data_out.dtype)
                node = None
        try:
            meta_hash = ext_hash(meta)
        except TypeError:
            validate(meta, "meta")  # raises, naming the path from "meta"
            raise
        # Paths from the base: cheaper than opening the groups on the way.
        links = base.id.links
        new_meta_group = not links.exists(_META_KEY)
        meta_path = _META_KEY + b"/" + meta_hash.encode()
        # Equal hashes are equal trees: a stored metadata tree was validated when stored.
        new_meta = new_meta_group or not _exists(base, meta_path)
        meta_json = meta_json_text(meta) if new_meta else None
        meta_node = validate(meta, "meta") if new_meta and meta_json is None else None
        input_hash = ext_hash(data_in)
        attr = _entry_attr(input_hash, ext_hash(data_out), meta_hash)
        name = _entry_name(input_hash, meta_hash)
        shard = name[:SHARD_DIGITS].encode()
        new_shard = not links.exists(shard)
        path = shard + b"/" + name.encode()
        if not new_shard:
            _exists(base, path)  # the shard is a group: checked before anything is written
        # A new entry is written in place: until its attribute is set, readers take it for
        # absent. An existing one (complete or not) is replaced by a swap. Both reach the file
        # in the one flush at the end, which a journaled file makes atomic.
        try:
            if new_meta:
                store_meta(base, new_meta_group, meta_hash, meta, meta_node, meta_json)
            if new_shard:
                h5g.create(base.id, shard, gcpl=_GROUP_CREATE)
            with _hdf5.replacing(base.id, path) as target:
                entry: ObjectID
                if node is None:
                    entry = _hdf5.create_dataset(base.id, target, data_out)
                else:
                    _hdf5.write_node(base, target.decode(), data_out, node)
                    entry = h5o.open(base.id, target)
                _set_entry_attr(entry, attr)
        except BaseException:
            # Nothing of a failed write stays: the groups and metadata it added (its entry is
            # removed by replacing()).
            created = [shard] if new_shard else []
            if new_meta_group:
                created.append(_META_KEY)
            elif new_meta:
                created.append(meta_path)
            for created_path in created:
                with contextlib.suppress(Exception):
                    _unlink(base.id, created_path)
            raise
        file.flush()

    def exists(self, data_in: Any, meta: Any) -> bool:
        """Tells whether a complete entry is stored for ``data_in`` and ``meta``.

        Args:
            data_in: The input.
            meta: The identifying metadata.

        Raises:
            TypeError: ``data_in`` or ``meta`` holds a value ``ext_hash`` does not accept.
            ValueError: The HDF5 file is closed.

        Returns:
            ``True`` if :meth:`read` would return an output for them.
        """
        base = self._open_base()
        return _find_entry(base, _entry_name(ext_hash(data_in), ext_hash(meta))) is not None

    def __len__(self) -> int:
        """The number of complete entries (opens each entry: the cost grows with their number).

        Raises:
            ValueError: The HDF5 file is closed.
        """
        base = self._open_base()
        names: set[str] = set()
        for _, shard in _shards(base):
            for member in list(shard):
                found = _ENTRY_NAME.fullmatch(member.decode("utf-8", "replace"))
                if found and _complete_entry(shard, member) is not None:
                    names.add(found[1])
        return len(names)

    def evict(self, data_in: Any, meta: Any) -> None:
        """Deletes the entry of ``data_in`` and ``meta``, durably and atomically, as a write.

        The metadata tree stays in ``.corelay-meta``: other entries may share it, and it is
        small; :meth:`clear` removes it.

        Args:
            data_in: The input.
            meta: The identifying metadata.

        Raises:
            NoDataSource: No complete entry is stored for them (as :meth:`read` would say):
                evicting what is not there is more likely a mistaken input or metadata than
                intended. Check with :meth:`exists` first to evict only if present.
            NoDataTarget: The HDF5 file is open read-only.
            TypeError: ``data_in`` or ``meta`` holds a value ``ext_hash`` does not accept.
            ValueError: The HDF5 file is closed.
        """
        base = self._open_base()
        file = self._writable_file(base)
        name = _entry_name(ext_hash(data_in), ext_hash(meta))
        if _find_entry(base, name) is None:
            raise NoDataSource(f"no entry {name} for this input and meta in {where(base)}")

        def unlink_entry() -> None:
            for path in (entry_path(name).encode(), _temp_path(name)):
                if _exists(base, path):
                    base.id.unlink(path)

        _change(file, unlink_entry)

    def clear(self) -> None:
        """Deletes every entry and the stored metadata, durably and atomically, as a write.

        Only what HashedHDF5 wrote goes: the entries in the shard groups (a shard group left
        with other members keeps them) and ``.corelay-meta``. Other members of :attr:`base`
        stay.

        Raises:
            NoDataTarget: The HDF5 file is open read-only.
            ValueError: The HDF5 file is closed.
        """
        base = self._open_base()
        file = self._writable_file(base)

        def unlink_all() -> None:
            for shard_name, shard in list(_shards(base)):
                members = list(shard)
                entries = [
                    member
                    for member in members
                    if _ENTRY_NAME.fullmatch(member.decode("utf-8", "replace"))
                ]
                if len(entries) == len(members):
                    base.id.unlink(shard_name)
                else:
                    for member in entries:
                        shard.unlink(member)
            if base.id.links.exists(_META_KEY):
                base.id.unlink(_META_KEY)

        _change(file, unlink_all)

    def _open_base(self) -> h5py.Group:
        base = self.base
        if not base.id.valid:  # h5py objects are invalid once their file is closed
            raise ValueError("I/O operation on a HashedHDF5 whose HDF5 file is closed")
        return base

    def _writable_file(self, base: h5py.Group) -> h5py.File:
        cached = self._file
        if cached is None or cached[0] is not base:
            file = base.file
            cached = self._file = (base, file, file.mode != "r")
        if not cached[2]:
            raise NoDataTarget(f"HDF5 file {cached[1].filename!r} is open read-only")
        return cached[1]


def _change(file: h5py.File, change: Callable[[], None]) -> None:
    """Makes ``change`` to the file and flushes it, as :meth:`HashedHDF5.write` does.

    The one flush is what a journaled file makes atomic; an interrupt waits until it is done.
    """
    with _hdf5.interrupts_deferred():
        change()
        file.flush()
