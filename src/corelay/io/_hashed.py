"""HashedHDF5: pipeline outputs cached in an HDF5 group, keyed by exact hashes of their inputs.

The layout of the entries is in the documentation of :class:`HashedHDF5`.
"""

import contextlib
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5o
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
    # HashedHDF5.write checks it node by node and names the path of a bad node.
    HashedOutput = object

#: Value of the ``corelay.kind`` attribute of a complete entry.
ENTRY_KIND = "hashed-entry"
#: Entry attribute holding ``ext_hash(data_in)``.
INPUT_HASH_ATTR = "corelay.input_hash"
#: Entry attribute holding ``ext_hash(data_out)``.
OUTPUT_HASH_ATTR = "corelay.output_hash"
#: The group in ``base`` that holds each distinct metadata tree once.
META_GROUP = ".corelay-meta"

_ACCEPTED = "HashedHDF5 stores a numpy.ndarray or a tuple of arrays and such tuples"
_KIND_KEY = KIND_ATTR.encode()
_OUTPUT_HASH_KEY = OUTPUT_HASH_ATTR.encode()
_META_KEY = META_GROUP.encode()


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


def _complete_entry(base: h5py.Group, name: str) -> h5g.GroupID | None:
    entry = _open_id(base.id, name)
    # The kind, written last, marks a complete entry, and only HashedHDF5 writes the output
    # hash: testing that both exist costs a tenth of reading the kind's value.
    if (
        isinstance(entry, h5g.GroupID)
        and h5a.exists(entry, _KIND_KEY)
        and h5a.exists(entry, _OUTPUT_HASH_KEY)
    ):
        return entry
    return None


def _unlink(group: h5py.Group, name: str) -> None:
    key = name.encode()
    if group.id.links.exists(key):
        group.id.unlink(key)


@typechecked
class HashedHDF5:
    """A cache of pipeline outputs in an HDF5 group, keyed by their input and metadata.

    ``write(data_out, data_in, meta)`` stores ``data_out`` (an array, or a tuple of arrays and
    such tuples, at any depth) as the entry of ``data_in`` and ``meta``; ``read(data_in, meta)``
    returns it. The entry's name is an exact content hash (:func:`~corelay.io.hashing.ext_hash`)
    of both: any bit difference in a value, dtype or shape is another entry, while the memory
    layout of an array is not (a Fortran-ordered or strided copy finds the same entry).

    An entry is a group, readable with plain h5py, in the group given as ``base``::

        <base>/
            <entry name>/          one entry per (data_in, meta), with the attributes
                                       corelay.input_hash   ext_hash(data_in)
                                       corelay.output_hash  ext_hash(data_out)
                                       corelay.kind         'hashed-entry', written last: an
                                                            entry without it is incomplete
                data               the output in the HDF5 codec's layout: a dataset for an
                                   array, a group of items '0', '1', ... for a tuple
                meta               the metadata tree in the codec's layout: a hard link to
                                   its copy in .corelay-meta, shared by the entries with
                                   equal metadata
            .corelay-meta/
                <ext_hash(meta)>   each distinct metadata tree, stored once

    The entry name is ``ext_hash((ext_hash(data_in), ext_hash(meta)))``, 32 hexadecimal digits
    (:meth:`entry_name`); names starting with ``.corelay-tmp-`` are entries being replaced. A
    write validates everything before writing anything, marks the entry complete last, writes
    a replacement under a temporary name and swaps it in, and flushes the file before it
    returns: a reader sees a complete entry or none, the old one or the new one.

    That a returned write survives the process being killed at any later moment also depends on
    how the file was opened. HDF5 writes a flush as many separate writes, and a process killed
    among them can damage what earlier flushes wrote (with a plain ``h5py.File``, entries that
    had been flushed were lost in 4 of 80 trials). Open the file with
    :func:`corelay.io.journal.open_journaled`, which makes each flush atomic, to have that
    guarantee.

    Each write costs one flush, and HDF5's flush time grows with the number of entries in the
    file's metadata cache (up to its size, 2 MB by default): a smaller cache makes writes
    cheaper, at the price of fewer cached reads, for example ``config =
    file.id.get_mdc_config(); config.set_initial_size = True; config.initial_size =
    config.min_size = config.max_size = 512 * 1024; file.id.set_mdc_config(config)``.
    HashedHDF5 leaves that choice to whoever opens the file.
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
        # Group.file builds a new File object on every access; both are looked up once per base.
        self._file: tuple[h5py.Group, h5py.File] | None = None
        self._meta_group: tuple[h5py.Group, h5py.Group] | None = None

    def entry_name(self, data_in: Any, meta: Any) -> str:
        """Returns the name of the entry for ``data_in`` and ``meta`` in :attr:`base`.

        Args:
            data_in: The input: any value :func:`~corelay.io.hashing.ext_hash` accepts.
            meta: The identifying metadata: any value ``ext_hash`` accepts.

        Raises:
            TypeError: ``data_in`` or ``meta`` holds a value ``ext_hash`` does not accept.

        Returns:
            ``ext_hash((ext_hash(data_in), ext_hash(meta)))``: 32 hexadecimal digits.
        """
        return _entry_name(ext_hash(data_in), ext_hash(meta))

    def read(self, data_in: Any, meta: Any) -> HashedOutput:
        """Returns the output stored for ``data_in`` and ``meta``.

        Args:
            data_in: The input the output was produced from.
            meta: The identifying metadata it was written with.

        Raises:
            NoDataSource: No complete entry is stored for them: none, an incomplete one, or a
                group of that name not written by HashedHDF5. The message names the entry.
            TypeError: ``data_in`` or ``meta`` holds a value ``ext_hash`` does not accept.
            ValueError: The HDF5 file is closed.

        Returns:
            The output as written: an array, or tuples (in order) of arrays and tuples.
        """
        base = self._open_base()
        name = self.entry_name(data_in, meta)
        entry = _complete_entry(base, name)
        if entry is None:
            # A writer killed after unlinking the old entry and before moving the new one
            # into place leaves the new one, complete, under its temporary name.
            entry = _complete_entry(base, TEMP_PREFIX + name)
        if entry is None:
            raise NoDataSource(f"no entry {name} for this input and meta in {_where(base)}")
        data = _open_id(entry, "data")
        try:
            if isinstance(data, h5d.DatasetID):  # an array: the only leaf an entry holds
                return _hdf5.read_array(data)
            if isinstance(data, h5g.GroupID):
                return cast(HashedOutput, _hdf5.read_node(h5py.Group(data)))
            raise KeyError("no member 'data'")
        except KeyError as error:
            raise NoDataSource(f"incomplete entry {name} in {_where(base)}: {error}") from error

    def write(self, data_out: HashedOutput, data_in: Any, meta: Any) -> None:
        """Stores ``data_out`` as the output produced from ``data_in`` with ``meta``.

        An existing entry for the same input and metadata is replaced, atomically. The file is
        flushed before this returns.

        Args:
            data_out: The output: a ``numpy.ndarray`` of a dtype the stored tree accepts, or a
                tuple of arrays and such tuples, at any depth.
            data_in: The input: any value :func:`~corelay.io.hashing.ext_hash` accepts.
            meta: Identifying metadata: any stored tree (``None``, bool, int, float, complex,
                str, bytes, NumPy arrays and scalars, dicts with str keys, tuples and lists of
                them). It is hashed into the entry's name and stored in the entry, to be read
                back exactly. A value that cannot be stored (a function, a set) is a
                ``TypeError``: storing its repr instead would not read back as the value.

        Raises:
            NoDataTarget: The HDF5 file is open read-only.
            TypeError: ``data_out`` is not an array or a tuple of them, an array's dtype is not
                supported, ``meta`` holds a value that cannot be stored, or ``data_in`` one
                that cannot be hashed. The message names the path of the node, for example
                ``data_out[1][0]: ...``. Nothing is written.
            ValueError: The HDF5 file is closed, or ``meta`` has an invalid dict key (empty,
                containing ``/``, ``.`` or ``..``). Nothing is written.
        """
        base = self._open_base()
        file = self._file_of(base)
        if file.mode == "r":
            raise NoDataTarget(f"HDF5 file {file.filename!r} is open read-only")
        _check_output(data_out, "data_out")
        node = validate(data_out)
        try:
            meta_hash = ext_hash(meta)
        except TypeError:
            validate(meta, "meta")  # raises, naming the path from "meta"
            raise
        meta_group = self._meta_group_of(base)
        # Equal hashes are equal trees: a stored metadata tree was validated when stored.
        meta_node = None
        if meta_group is None or not meta_group.id.links.exists(meta_hash.encode()):
            meta_node = validate(meta, "meta")
        input_hash = ext_hash(data_in)
        output_hash = ext_hash(data_out)
        name = _entry_name(input_hash, meta_hash)
        temp_name = TEMP_PREFIX + name
        _unlink(base, temp_name)  # left by a killed writer
        # A new entry is written in place: until its kind is set, readers take it for absent.
        # An existing one (complete or not) is replaced by a swap.
        replace = base.id.links.exists(name.encode())
        target = temp_name if replace else name
        try:
            if meta_node is not None:
                meta_group = self._store_meta(base, meta_group, meta_hash, meta, meta_node)
            assert meta_group is not None
            entry = _hdf5.create_group(base, target, track_order=True)
            _hdf5.write_node(entry, "data", data_out, node)
            entry.id.links.create_hard(b"meta", meta_group.id, meta_hash.encode())
            set_str_attr(entry, INPUT_HASH_ATTR, input_hash)
            set_str_attr(entry, OUTPUT_HASH_ATTR, output_hash)
            set_str_attr(entry, KIND_ATTR, ENTRY_KIND)
            if replace:
                file.flush()  # the new entry is on disk, complete, before the old one goes
                base.id.unlink(name.encode())
                base.id.move(temp_name.encode(), name.encode())
        except BaseException:
            with contextlib.suppress(Exception):
                _unlink(base, target)
            raise
        file.flush()

    def _open_base(self) -> h5py.Group:
        base = self.base
        if not base:  # h5py objects are false once their file is closed
            raise ValueError("I/O operation on a HashedHDF5 whose HDF5 file is closed")
        return base

    def _file_of(self, base: h5py.Group) -> h5py.File:
        if self._file is None or self._file[0] is not base:
            self._file = (base, base.file)
        return self._file[1]

    def _meta_group_of(self, base: h5py.Group) -> h5py.Group | None:
        cached = self._meta_group
        if cached is not None and cached[0] is base and base.id.links.exists(_META_KEY):
            return cached[1]
        found = _open_id(base.id, META_GROUP)
        if found is None:
            return None
        if not isinstance(found, h5g.GroupID):
            raise ValueError(f"{META_GROUP!r} in {_where(base)} is not a group")
        meta_group = h5py.Group(found)
        self._meta_group = (base, meta_group)
        return meta_group

    def _store_meta(
        self,
        base: h5py.Group,
        meta_group: h5py.Group | None,
        meta_hash: str,
        meta: object,
        meta_node: Node,
    ) -> h5py.Group:
        if meta_group is None:
            meta_group = _hdf5.create_group(base, META_GROUP, track_order=True)
            self._meta_group = (base, meta_group)
        temp_name = TEMP_PREFIX + meta_hash
        _unlink(meta_group, temp_name)
        try:
            _hdf5.write_node(meta_group, temp_name, meta, meta_node)
        except BaseException:
            with contextlib.suppress(Exception):
                _unlink(meta_group, temp_name)
            raise
        meta_group.id.move(temp_name.encode(), meta_hash.encode())
        return meta_group


def _where(base: h5py.Group) -> str:
    return f"group {base.name!r} of {base.file.filename!r}"
