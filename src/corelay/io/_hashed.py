"""HashedHDF5: pipeline outputs cached in an HDF5 group, keyed by exact hashes of their inputs.

Layout of the group given as ``base`` (plain groups, datasets and attributes, readable with h5py)::

    <base>/
        <entry name>/          one entry per (data_in, meta); attributes:
                                   corelay.kind        'hashed-entry', written last: the entry
                                                       is complete
                                   corelay.input_hash  ext_hash(data_in)
                                   corelay.output_hash ext_hash(data_out)
            data               the output: a dataset, or a group of items '0', '1', ... for a
                               tuple (the layout of the HDF5 codec, kinds in attributes)
            meta               the metadata tree, in the codec's layout; a hard link to the
                               copy in .corelay-meta, shared by all entries with equal metadata
        .corelay-meta/
            <ext_hash(meta)>   each distinct metadata tree, stored once

The entry name is ``ext_hash((ext_hash(data_in), ext_hash(meta)))``, 32 hexadecimal digits.
Entry groups are created with link creation order tracked: HDF5 then stores their few links in
the object header ("new-style" groups), which halves the cost of flushing a new entry.
"""

import contextlib
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5o, h5p
from h5py._objects import ObjectID

from corelay._typecheck import typechecked
from corelay.io import _hdf5
from corelay.io._hdf5 import KIND_ATTR, set_str_attr
from corelay.io._keys import TEMP_PREFIX
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.hashing import ext_hash
from corelay.io.tree import Node, RecursiveNumPyArrayTuple, validate

__all__ = [
    "ENTRY_KIND",
    "INPUT_HASH_ATTR",
    "META_GROUP",
    "OUTPUT_HASH_ATTR",
    "HashedHDF5",
    "HashedOutput",
]

if TYPE_CHECKING:
    HashedOutput: TypeAlias = np.ndarray[Any, Any] | RecursiveNumPyArrayTuple
    """What :class:`HashedHDF5` stores: an array, or a tuple of arrays and such tuples."""
else:
    # Checked node by node by HashedHDF5.write, which names the path of a bad node.
    HashedOutput = object

#: Value of ``corelay.kind`` on a complete entry group.
ENTRY_KIND = "hashed-entry"
#: Entry attribute: ``ext_hash(data_in)``.
INPUT_HASH_ATTR = "corelay.input_hash"
#: Entry attribute: ``ext_hash(data_out)``.
OUTPUT_HASH_ATTR = "corelay.output_hash"
#: Group in ``base`` holding each distinct metadata tree once.
META_GROUP = ".corelay-meta"

_ACCEPTED = "HashedHDF5 stores a numpy.ndarray or a tuple of arrays and such tuples"

_KIND_KEY = KIND_ATTR.encode()
_OUTPUT_HASH_KEY = OUTPUT_HASH_ATTR.encode()
_GROUP_CREATE = h5p.create(h5p.GROUP_CREATE)
_GROUP_CREATE.set_link_creation_order(h5p.CRT_ORDER_TRACKED)


def _check_output(value: object, path: str) -> None:
    if isinstance(value, np.ndarray):
        return
    if type(value) is tuple:
        for index, item in enumerate(cast("tuple[object, ...]", value)):
            _check_output(item, f"{path}[{index}]")
        return
    raise TypeError(f"{path}: unsupported type {type(value).__qualname__}; {_ACCEPTED}")


def _entry_name(input_hash: str, meta_hash: str) -> str:
    return ext_hash((input_hash, meta_hash))


def _open_id(group: h5g.GroupID, name: str) -> ObjectID | None:
    try:
        return h5o.open(group, name.encode())
    except KeyError:  # no such member, or a dangling soft or external link
        return None


def _open(group: h5py.Group, name: str) -> h5py.Group | h5py.Dataset | None:
    oid = _open_id(group.id, name)
    if isinstance(oid, h5g.GroupID):
        return h5py.Group(oid)
    if isinstance(oid, h5d.DatasetID):
        return h5py.Dataset(oid)
    return None  # a named datatype


def _complete_entry(base: h5py.Group, name: str) -> h5g.GroupID | None:
    entry = _open_id(base.id, name)
    # The kind, written last, marks a complete entry; and only HashedHDF5 writes the output
    # hash. Testing that both exist costs a tenth of reading the kind's value.
    if (
        isinstance(entry, h5g.GroupID)
        and h5a.exists(entry, _KIND_KEY)
        and h5a.exists(entry, _OUTPUT_HASH_KEY)
    ):
        return entry
    return None


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    return h5py.Group(h5g.create(parent.id, name.encode(), gcpl=_GROUP_CREATE))


def _unlink(group: h5py.Group, name: str) -> None:
    key = name.encode()
    if group.id.links.exists(key):
        group.id.unlink(key)


@typechecked
class HashedHDF5:
    """A cache of pipeline outputs in an HDF5 group, keyed by their input and metadata.

    ``write(data_out, data_in, meta)`` stores ``data_out`` (an array, or a tuple of arrays and
    such tuples) as an entry named by exact content hashes of ``data_in`` and ``meta``;
    ``read(data_in, meta)`` returns it. Any bit difference in a value, dtype or shape of
    ``data_in`` or ``meta`` is another entry; the memory layout of an array is not.

    Each entry is a group holding the output (``data``), the metadata (``meta``) and the hashes
    of input, metadata and output (attributes), readable with plain h5py; its layout is in the
    module documentation. A write validates everything before writing, builds the entry under
    a temporary name, swaps it into place and flushes the file: an entry is complete or absent,
    a rewrite replaces it atomically, and a write that returned survives the process being
    killed.
    """

    base: h5py.Group
    """The HDF5 group that holds the entries."""

    def __init__(self, h5group: h5py.Group) -> None:
        """Uses ``h5group`` as the store.

        Args:
            h5group: The group to hold the entries; the file may be open read-only, then
                :meth:`write` raises :class:`NoDataTarget`.
        """
        self.base = h5group
        self._file: tuple[h5py.Group, h5py.File] | None = None

    def entry_name(self, data_in: Any, meta: Any) -> str:
        """Returns the name of the entry for ``data_in`` and ``meta`` in :attr:`base`.

        Args:
            data_in: The input; any value :func:`~corelay.io.hashing.ext_hash` accepts.
            meta: The identifying metadata; any value ``ext_hash`` accepts.

        Raises:
            TypeError: ``data_in`` or ``meta`` holds a value that cannot be hashed.

        Returns:
            32 hexadecimal digits, ``ext_hash((ext_hash(data_in), ext_hash(meta)))``.
        """
        return _entry_name(ext_hash(data_in), ext_hash(meta))

    def read(self, data_in: Any, meta: Any) -> HashedOutput:
        """Returns the output stored for ``data_in`` and ``meta``.

        Args:
            data_in: The input the output was produced from.
            meta: The identifying metadata it was written with.

        Raises:
            NoDataSource: No complete entry is stored for them (the message names the entry);
                an absent entry, a partly written one, or a foreign group of that name.
            TypeError: ``data_in`` or ``meta`` holds a value that cannot be hashed.
            ValueError: The HDF5 file is closed.

        Returns:
            The output as written: an array, or tuples (in order) of arrays and tuples.
        """
        base = self._open_base()
        name = self.entry_name(data_in, meta)
        entry = _complete_entry(base, name)
        if entry is None:
            # A writer killed between unlinking an old entry and moving the new one into
            # place leaves the new one, complete, under its temporary name.
            entry = _complete_entry(base, TEMP_PREFIX + name)
        if entry is None:
            raise NoDataSource(f"no entry {name} for this input and meta in {self._where(base)}")
        data = _open_id(entry, "data")
        try:
            if isinstance(data, h5d.DatasetID):  # an array: the only leaf an entry holds
                return _hdf5.read_array(data)
            if isinstance(data, h5g.GroupID):
                return cast(HashedOutput, _hdf5.read_node(h5py.Group(data)))
            raise KeyError("no member 'data'")
        except KeyError as error:
            raise NoDataSource(
                f"incomplete entry {name} in {self._where(base)}: {error}"
            ) from error

    def write(self, data_out: HashedOutput, data_in: Any, meta: Any) -> None:
        """Stores ``data_out`` as the output produced from ``data_in`` with ``meta``.

        An existing entry for the same input and metadata is replaced. The file is flushed
        before this returns.

        Args:
            data_out: The output: a ``numpy.ndarray`` (of a dtype the stored tree accepts), or a
                tuple of arrays and such tuples, at any depth.
            data_in: The input; any value :func:`~corelay.io.hashing.ext_hash` accepts.
            meta: Identifying metadata: any stored tree (``None``, scalars, str, arrays, NumPy
                scalars, dicts with str keys, tuples, lists). It is hashed into the entry name
                and stored in the entry. A value that cannot be stored (a function, a set) is
                rejected rather than stored as its repr, which could not be read back.

        Raises:
            NoDataTarget: The HDF5 file is open read-only.
            TypeError: ``data_out`` is not an array or a tuple of them, an array has an
                unsupported dtype, or ``meta`` or ``data_in`` holds a value that cannot be
                stored or hashed; the message names the path of the node, for example
                ``data_out[1][0]: ...``. Nothing is written.
            ValueError: The HDF5 file is closed, or ``meta`` has an invalid dict key.
        """
        base = self._open_base()
        file = self._file_of(base)
        if file.mode == "r":
            raise NoDataTarget(f"HDF5 file {file.filename!r} is open read-only")
        _check_output(data_out, "data_out")
        node = validate(data_out)
        meta_node = validate(meta, "meta")
        input_hash, meta_hash = ext_hash(data_in), ext_hash(meta)
        output_hash = ext_hash(data_out)
        name = _entry_name(input_hash, meta_hash)
        temp_name = TEMP_PREFIX + name
        _unlink(base, temp_name)  # left by a killed writer
        try:
            meta_group = self._store_meta(base, meta_hash, meta, meta_node)
            entry = _create_group(base, temp_name)
            _hdf5.write_node(entry, "data", data_out, node)
            entry.id.links.create_hard(b"meta", meta_group.id, meta_hash.encode())
            set_str_attr(entry, INPUT_HASH_ATTR, input_hash)
            set_str_attr(entry, OUTPUT_HASH_ATTR, output_hash)
            set_str_attr(entry, KIND_ATTR, ENTRY_KIND)
            if base.id.links.exists(name.encode()):
                # The new entry is on disk, complete, before the old one is unlinked.
                file.flush()
                base.id.unlink(name.encode())
            base.id.move(temp_name.encode(), name.encode())
        except BaseException:
            with contextlib.suppress(Exception):
                _unlink(base, temp_name)
            raise
        file.flush()

    def _open_base(self) -> h5py.Group:
        base = self.base
        if not base:  # h5py objects are false once their file is closed
            raise ValueError("I/O operation on a HashedHDF5 whose HDF5 file is closed")
        return base

    def _file_of(self, base: h5py.Group) -> h5py.File:
        # ``Group.file`` builds a new File object on every access.
        if self._file is None or self._file[0] is not base:
            self._file = (base, base.file)
        return self._file[1]

    @staticmethod
    def _where(base: h5py.Group) -> str:
        return f"group {base.name!r} of {base.file.filename!r}"

    @staticmethod
    def _store_meta(base: h5py.Group, meta_hash: str, meta: object, meta_node: Node) -> h5py.Group:
        meta_group = _open(base, META_GROUP)
        if meta_group is None:
            meta_group = _create_group(base, META_GROUP)
        elif not isinstance(meta_group, h5py.Group):
            raise ValueError(f"{META_GROUP!r} in {base.name!r} is a dataset, not a group")
        if meta_group.id.links.exists(meta_hash.encode()):
            return meta_group  # moved into place once complete
        temp_name = TEMP_PREFIX + meta_hash
        _unlink(meta_group, temp_name)
        try:
            _hdf5.write_node(meta_group, temp_name, meta, meta_node)
        except BaseException:
            with contextlib.suppress(Exception):
                _unlink(meta_group, temp_name)
            raise
        _unlink(meta_group, meta_hash)
        meta_group.id.move(temp_name.encode(), meta_hash.encode())
        return meta_group
