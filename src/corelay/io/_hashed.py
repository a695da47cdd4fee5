"""HashedHDF5: pipeline outputs cached in an HDF5 group, keyed by exact hashes of their inputs.

The layout of the entries is in the documentation of :class:`HashedHDF5`.
"""

import contextlib
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5o, h5p, h5s, h5t
from h5py._objects import ObjectID

from corelay._typecheck import typechecked
from corelay.io import _hdf5
from corelay.io._keys import TEMP_PREFIX
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.hashing import ext_hash
from corelay.io.tree import Node, RecursiveNumPyArrayTuple, validate

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
    HashedOutput: TypeAlias = np.ndarray[Any, Any] | RecursiveNumPyArrayTuple
    """What :class:`HashedHDF5` stores: an array, or a tuple of arrays and such tuples."""
else:
    # HashedHDF5.write checks it node by node and names the path of a bad node.
    HashedOutput = object

#: The attribute that makes an object an entry: ``'input=<hash> output=<hash> meta=<hash>'``, a
#: fixed-length ASCII string, written last.
ENTRY_ATTR = "corelay.hashed_entry"
#: The group in ``base`` that holds each distinct metadata tree once, named by its hash.
META_GROUP = ".corelay-meta"
#: Entries are spread over groups named by the first this many digits of their names.
SHARD_DIGITS = 2

_ACCEPTED = "HashedHDF5 stores a numpy.ndarray or a tuple of arrays and such tuples"
_ENTRY_KEY = ENTRY_ATTR.encode()
_META_KEY = META_GROUP.encode()
_TEMP_KEY = TEMP_PREFIX.encode()
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


# A plain numeric array of one or more dimensions is written here, as the HDF5 codec writes it
# (a dataset without a kind: every reader reads it as this array), in the compact layout when
# small. Everything else goes through the codec.
_PLAIN_KINDS = "biufc"


_GROUP_CREATE = h5p.create(h5p.GROUP_CREATE)
_GROUP_CREATE.set_obj_track_times(False)
_SCALAR_SPACE = h5s.create(h5s.SCALAR)
_ATTR_TYPES: dict[int, h5t.TypeID] = {}
# Dtypes that validate() accepted: checking an array's dtype is then a set lookup.
_VALID_DTYPES: set[np.dtype[Any]] = set()


def _check_output(value: object, path: str) -> None:
    if isinstance(value, np.ndarray):
        array: np.ndarray[Any, Any] = cast(Any, value)
        if type(array) is not np.ndarray or array.dtype not in _VALID_DTYPES:
            validate(array, path)  # raises for a dtype or subclass it cannot store
            if type(array) is np.ndarray:
                _VALID_DTYPES.add(array.dtype)
        return
    if type(value) is tuple:
        for index, item in enumerate(cast("tuple[object, ...]", value)):
            _check_output(item, f"{path}[{index}]")
        return
    raise TypeError(f"{path}: unsupported type {type(value).__qualname__}; {_ACCEPTED}")


def _is_plain_array(value: object) -> bool:
    if not isinstance(value, np.ndarray):
        return False
    array: np.ndarray[Any, Any] = cast(Any, value)
    return array.ndim > 0 and array.dtype.kind in _PLAIN_KINDS


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


def _exists(base: h5py.Group, path: bytes) -> bool:
    # links.exists needs the groups on the way to exist.
    try:
        return base.id.links.exists(path)
    except RuntimeError as error:
        parent = path.rpartition(b"/")[0].decode()
        raise ValueError(f"{parent!r} in {_where(base)} is not a group") from error


def _unlink(group: h5g.GroupID, name: bytes) -> None:
    if group.links.exists(name):
        group.unlink(name)


@typechecked
class HashedHDF5:
    """A cache of pipeline outputs in an HDF5 group, keyed by their input and metadata.

    ``write(data_out, data_in, meta)`` stores ``data_out`` (an array, or a tuple of arrays and
    such tuples, at any depth) as the entry of ``data_in`` and ``meta``; ``read(data_in, meta)``
    returns it. The entry's name is an exact content hash (:func:`~corelay.io.hashing.ext_hash`)
    of both: any bit difference in a value, dtype or shape is another entry, while the memory
    layout of an array is not (a Fortran-ordered or strided copy finds the same entry).

    The entries are ordinary HDF5 objects, readable with plain h5py, in the group given as
    ``base``::

        <base>/
            <first 2 digits of the entry name>/
                <entry name>       the output in the HDF5 codec's layout: a dataset for an
                                   array, a group of items '0', '1', ... for a tuple. Its
                                   attribute corelay.hashed_entry, written last, marks it
                                   complete (an object without it reads as absent) and
                                   holds the hashes, as the ASCII string
                                   'input=<ext_hash(data_in)> output=<ext_hash(data_out)>
                                   meta=<ext_hash(meta)>'
            .corelay-meta/
                <ext_hash(meta)>   each distinct metadata tree, stored once, in the codec's
                                   layout

    The entry name is ``ext_hash((ext_hash(data_in), ext_hash(meta)))``, 32 hexadecimal digits
    (:meth:`entry_name`). Spreading the entries over 256 groups keeps each group small, and so
    the cost of a write low however many entries there are. Arrays of up to 4 KiB are stored in
    their dataset's header (HDF5's compact layout), larger ones contiguously. Names starting
    with ``.corelay-tmp-`` are entries being replaced.

    A write validates everything before writing anything, marks the entry complete last, writes
    a replacement under a temporary name and swaps it in, and flushes the file once, before it
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
    HashedHDF5 leaves that choice to whoever opens the file
    (:func:`~corelay.io.journal.open_journaled` makes it).
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

    def read(self, data_in: Any, meta: Any) -> HashedOutput:
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
            The output as written: an array, or tuples (in order) of arrays and tuples.
        """
        base = self._open_base()
        name = _entry_name(ext_hash(data_in), ext_hash(meta))
        entry = _complete_entry(base.id, entry_path(name).encode())
        if entry is None:
            # A writer of a file opened without the journal, killed between unlinking the old
            # entry and moving the new one into place, can leave the new one, complete, under
            # its temporary name.
            temp_path = f"{name[:SHARD_DIGITS]}/{TEMP_PREFIX}{name}"
            entry = _complete_entry(base.id, temp_path.encode())
        if entry is None:
            raise NoDataSource(f"no entry {name} for this input and meta in {_where(base)}")
        try:
            if isinstance(entry, h5d.DatasetID):  # an array: the only leaf an entry holds
                return _hdf5.read_array(entry)
            if isinstance(entry, h5g.GroupID):
                output: object = _hdf5.read_node(h5py.Group(entry))
                if type(output) is tuple:
                    return cast(HashedOutput, output)
            raise KeyError("not an array or a tuple")
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
                them). It is hashed into the entry's name and stored once per distinct value,
                to be read back exactly. A value that cannot be stored (a function, a set) is a
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
        file = self._writable_file(base)
        _check_output(data_out, "data_out")
        # Everything is validated before anything is written.
        node = None if _is_plain_array(data_out) else validate(data_out)
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
        meta_node = validate(meta, "meta") if new_meta else None
        input_hash = ext_hash(data_in)
        attr = _entry_attr(input_hash, ext_hash(data_out), meta_hash)
        name = _entry_name(input_hash, meta_hash)
        shard = name[:SHARD_DIGITS].encode()
        new_shard = not links.exists(shard)
        path, temp_path = shard + b"/" + name.encode(), shard + b"/" + _TEMP_KEY + name.encode()
        # A new entry is written in place: until its attribute is set, readers take it for
        # absent. An existing one (complete or not) is replaced by a swap. Both reach the file
        # in the one flush at the end, which a journaled file makes atomic.
        replace = not new_shard and _exists(base, path)
        target = temp_path if replace else path
        try:
            if meta_node is not None:
                _store_meta(base, new_meta_group, meta_hash, meta, meta_node)
            if new_shard:
                h5g.create(base.id, shard, gcpl=_GROUP_CREATE)
            else:
                _unlink(base.id, temp_path)  # left by a killed writer
            entry: ObjectID
            if node is None:
                entry = _hdf5.create_dataset(base.id, target, data_out)
            else:
                _hdf5.write_node(base, target.decode(), data_out, node)
                entry = h5o.open(base.id, target)
            _set_entry_attr(entry, attr)
            if replace:
                base.id.unlink(path)
                base.id.move(temp_path, path)
        except BaseException:
            # Nothing of a failed write stays: its entry, and the groups and metadata it added.
            created = [shard if new_shard else target]
            if new_meta:
                created.append(_META_KEY if new_meta_group else meta_path)
            for created_path in created:
                with contextlib.suppress(Exception):
                    _unlink(base.id, created_path)
            raise
        file.flush()

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


def _store_meta(
    base: h5py.Group, new_group: bool, meta_hash: str, meta: object, meta_node: Node
) -> None:
    if new_group:
        meta_group = _hdf5.create_group(base, META_GROUP, track_order=True)
    else:
        found = h5o.open(base.id, _META_KEY)
        if not isinstance(found, h5g.GroupID):
            raise ValueError(f"{META_GROUP!r} in {_where(base)} is not a group")
        meta_group = h5py.Group(found)
    temp_key = (TEMP_PREFIX + meta_hash).encode()
    _unlink(meta_group.id, temp_key)
    _hdf5.write_node(meta_group, temp_key.decode(), meta, meta_node)
    meta_group.id.move(temp_key, meta_hash.encode())


def _where(base: h5py.Group) -> str:
    return f"group {base.name!r} of {base.file.filename!r}"
