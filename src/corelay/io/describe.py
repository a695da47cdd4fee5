"""Descriptions of storage files, made from their metadata: what ``corelay-io inspect`` shows.

:func:`describe_file` describes an HDF5 file (written by :class:`~corelay.io.storage.HDF5Storage`,
:class:`~corelay.io.storage.HashedHDF5`, corelay 1.0.0 or any other tool) or a
:class:`~corelay.io.storage.PickleStorage` file as a :class:`FileDescription`: the tree of names,
node kinds, dtypes, shapes and sizes, with one entry per cached output for HashedHDF5 groups. Each
node that the library cannot hold carries a ``problem``; :func:`find_problems` lists them with
their paths.

HDF5 datasets are described from their metadata: no array is read (only the few small datasets
a HashedHDF5 entry's metadata consists of). A pickle file holds no metadata apart from its
records, so its records are loaded one at a time, with the same restricted unpickler as
:class:`~corelay.io.storage.PickleStorage` (a file cannot run code).
"""

import contextlib
import json
import math
import pickle
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, cast

import h5py
import numpy as np
from h5py import h5a, h5d
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from corelay._typecheck import typechecked
from corelay.io import _hdf5, _pickle
from corelay.io._hashed import (
    ENTRY_ATTR,
    META_GROUP,
    SHARD_DIGITS,
    EntryHashes,
    entry_path,
    parse_entry_attr,
    stored_meta_json,
)
from corelay.io._hdf5 import DTYPE_ATTR, KIND_ATTR, get_str_attr
from corelay.io._keys import TEMP_PREFIX, name_problem, split_key
from corelay.io.errors import NoDataSource
from corelay.io.journal import open_journaled
from corelay.io.tree import (
    MAX_DEPTH,
    ArrayNode,
    NumpyScalarNode,
    ScalarNode,
    StringInfo,
    string_info_of,
    validate,
)

__all__ = [
    "VALUE_BYTES",
    "ContainerDescription",
    "ContainerKind",
    "Description",
    "FileDescription",
    "HashedEntryDescription",
    "HashedGroupDescription",
    "LeafDescription",
    "LeafKind",
    "NotAStorageFileError",
    "OtherDescription",
    "Problem",
    "Progress",
    "describe_file",
    "find_problems",
]

LeafKind: TypeAlias = Literal[
    "ndarray", "generic", "bool", "int", "float", "complex", "str", "bytes", "none"
]
"""The kinds of leaves, as in the stored tree: what reading the leaf returns."""

ContainerKind: TypeAlias = Literal["dict", "tuple", "list"]
"""The kinds of containers, as in the stored tree."""

Progress: TypeAlias = Callable[[int, int | None], None]
"""Called as ``progress(done, total)`` while a file is described; ``total`` may be unknown."""

_CONFIG = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

VALUE_BYTES = 256
"""The largest str or bytes value (in bytes, UTF-8 for str) a description shows."""


class LeafDescription(BaseModel):
    """A leaf of a stored tree: an HDF5 dataset, or a value in a pickle record."""

    model_config = _CONFIG

    node: Literal["leaf"] = "leaf"
    """Discriminates the descriptions."""

    name: str
    """The name in the containing group or container: a key, or an item index such as '3'."""

    kind: LeafKind
    """What reading the leaf returns: 'ndarray' an array, 'generic' a NumPy scalar, 'none' None,
    the others the Python type of that name."""

    recorded: bool
    """Whether the kind is certain: recorded in the file by this library, or a numeric array,
    which every reader reads alike; otherwise the kind is what reading infers from the layout,
    as for files written by corelay 1.0.0 or plain h5py."""

    dtype: str | None = None
    """The NumPy dtype string, for example ``<f4``, ``|S5`` or ``<U5``; ``|O`` for HDF5
    variable-length strings; None for Python scalars."""

    shape: tuple[int, ...] | None = None
    """The shape; () for a 0-d dataset or a NumPy scalar; None for Python scalars and HDF5
    datasets without a dataspace (h5py.Empty)."""

    nbytes: int | None = None
    """The size of the values in memory once read, in bytes; None when it varies (variable-length
    strings) or for Python numbers."""

    stored_bytes: int | None = None
    """The bytes the values take in an HDF5 file; None in a pickle file."""

    string_info: StringInfo | None = None
    """The encoding and fixed length in bytes (None: variable length) of string data."""

    problem: str | None = None
    """Why the library cannot hold this node; None when it can."""

    value: JsonValue = None
    """The value of a scalar, or of a str or bytes of at most :data:`VALUE_BYTES` bytes, as JSON:
    numbers as numbers, a float that is not finite as the string 'nan', 'inf' or '-inf', a complex
    as [real, imag], bytes as a string with each byte that is not printable ASCII (and the
    backslash) written ``\\xNN``; None for other leaves (and for None)."""

    attrs: dict[str, JsonValue] = Field(default_factory=dict)
    """The HDF5 attributes other than the library's own (``corelay.*``), by name, as JSON (see
    :attr:`HashedEntryDescription.meta`)."""


class ContainerDescription(BaseModel):
    """A dict, tuple or list of a stored tree: an HDF5 group, or a container in a pickle record."""

    model_config = _CONFIG

    node: Literal["container"] = "container"
    """Discriminates the descriptions."""

    name: str
    """The name in the containing group or container."""

    kind: ContainerKind
    """What reading the container returns: a dict (an OrderedDict), a tuple or a list."""

    recorded: bool
    """Whether the file records the kind; an HDF5 group without it reads as a dict."""

    children: list["Description"]
    """The members, in the order reading returns them."""

    problem: str | None = None
    """Why the library cannot hold this node; None when it can."""

    attrs: dict[str, JsonValue] = Field(default_factory=dict)
    """The HDF5 attributes other than the library's own (``corelay.*``), by name, as JSON (see
    :attr:`HashedEntryDescription.meta`)."""


class OtherDescription(BaseModel):
    """Something that is not a node of a stored tree.

    An HDF5 soft or external link, a named datatype, a pickle record that cannot be loaded, or a
    value of a type the library does not store.
    """

    model_config = _CONFIG

    node: Literal["other"] = "other"
    """Discriminates the descriptions."""

    name: str
    """The name in the containing group or container."""

    what: str
    """What it is, for example "soft link to '/a'"."""

    problem: str | None = None
    """Why the library cannot hold it; None for a soft link to an existing object."""


class HashedEntryDescription(BaseModel):
    """One entry of a HashedHDF5 group: an output cached for an input and metadata."""

    model_config = _CONFIG

    name: str
    """The entry's name: a hash of the input and the metadata (32 hexadecimal digits)."""

    layout: Literal["corelay", "corelay-1.0.0"]
    """Who wrote the entry: this library, or corelay 1.0.0 (whose hashes differ, so that its
    entries are never hit here)."""

    complete: bool
    """Whether the entry was written completely; an incomplete one reads as absent."""

    input_hash: JsonValue = None
    """The hash of the input (corelay 1.0.0: a list of hashes for a tuple input)."""

    output_hash: JsonValue = None
    """The hash of the output (corelay 1.0.0: a list of hashes for a tuple output)."""

    meta: JsonValue = None
    """The metadata as JSON: dicts as objects, tuples and lists as arrays, scalars and strings as
    :attr:`LeafDescription.value` shows them (at any length), arrays of up to 16 elements as
    nested arrays and larger ones as ``{"dtype": ..., "shape": [...]}``. Containers with more than
    64 members show the first 64 and a last member ``"..."`` that says how many more there are."""

    data: "Description | None" = None
    """The cached output; None when the entry has none."""


class HashedGroupDescription(BaseModel):
    """An HDF5 group that holds the entries of a HashedHDF5 cache."""

    model_config = _CONFIG

    node: Literal["hashed"] = "hashed"
    """Discriminates the descriptions."""

    name: str
    """The name in the containing group; '/' for the root group."""

    entries: list[HashedEntryDescription]
    """The entries, in the group's order."""


Description: TypeAlias = Annotated[
    LeafDescription | ContainerDescription | HashedGroupDescription | OtherDescription,
    Field(discriminator="node"),
]
"""A node of a described file, discriminated by its ``node`` field."""

ContainerDescription.model_rebuild()
HashedEntryDescription.model_rebuild()


class FileDescription(BaseModel):
    """A storage file described from its metadata: what "corelay-io inspect --json" prints."""

    model_config = _CONFIG

    path: str
    """The file, as given."""

    format: Literal["hdf5", "pickle"]
    """The file format."""

    file_bytes: int
    """The size of the file in bytes."""

    key: str | None = None
    """The key that was described, or None for the whole file."""

    entries: list[Description]
    """The described key, or every key at the top level of the file (every record key of a
    pickle file), in the file's order."""


Problem: TypeAlias = tuple[str, str]
"""A path in a file and why the library cannot hold the node there."""


class NotAStorageFileError(ValueError):
    """The file is not an HDF5 file or a file of pickle records, or it is damaged."""


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ENTRY_NAME = re.compile(r"[0-9a-f]{32}")
_SHARD_NAME = re.compile(f"[0-9a-f]{{{SHARD_DIGITS}}}")
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_NON_STR_KEY = "dict entry with a "
# What h5py raises for damaged metadata, besides OSError.
_UNREADABLE = (OSError, RuntimeError, ValueError, TypeError, KeyError, OverflowError)
_UPSTREAM_ENTRY_MEMBERS = ("data", "input", "output")
_CONTAINER_KINDS = ("dict", "tuple", "list")
# Metadata datasets and attributes with up to this many elements are read to show them.
_META_ELEMENTS = 16
_META_MEMBERS = 64
_META_DEPTH = 16
# The deepest value of a pickle record that is described, node by node.
_PICKLE_DEPTH = 100
# The library's own attributes, shown as what they record (the kind, the entry's hashes).
_OWN_ATTR_PREFIX = "corelay."
_SCALAR_KINDS = ("bool", "int", "float", "complex", "str", "bytes", "generic")


@typechecked
def describe_file(
    path: str | Path, key: str | None = None, progress: Progress | None = None
) -> FileDescription:
    """Describes an HDF5 or pickle storage file, or one key of it.

    Args:
        path: The file.
        key: A key: a path of groups like ``'a/b'`` in an HDF5 file, a record key in a pickle
            file. ``None`` describes every key.
        progress: Called with the number of nodes (HDF5) or records (pickle) described so far.

    Raises:
        FileNotFoundError: There is no file at ``path``.
        NotAStorageFileError: The file is neither HDF5 nor a file of pickle records, or it is
            truncated or damaged.
        NoDataSource: The file has no entry at ``key``.
        ValueError: ``key`` is not a valid key, or an
            :class:`~corelay.io.storage.UnreadableNodeError`: its path goes through an external
            link.
        BlockingIOError: Another process is writing the HDF5 file.

    Returns:
        The description.
    """
    file_path = Path(path)
    if key is not None:
        split_key(key)
    status = file_path.stat()
    if not stat.S_ISREG(status.st_mode) and not stat.S_ISDIR(status.st_mode):  # a FIFO hangs
        raise NotAStorageFileError(f"{str(path)!r} is not a regular file")
    size = status.st_size
    file_format = _detect_format(file_path, size)
    report: Progress = progress if progress is not None else _no_progress
    if file_format == "hdf5":
        entries = _describe_hdf5(file_path, key, report)
    else:
        entries = _describe_pickle(file_path, key, report)
    return FileDescription(
        path=str(path), format=file_format, file_bytes=size, key=key, entries=entries
    )


@typechecked
def find_problems(description: FileDescription) -> list[Problem]:
    """Lists every node of a described file that the library cannot hold.

    Args:
        description: The described file.

    Returns:
        ``(path, reason)`` pairs in file order; HDF5 paths like ``/a/b``, pickle paths like
        ``key['a'][0]``.
    """
    pickle_file = description.format == "pickle"
    problems: list[Problem] = []
    for entry in description.entries:
        root = entry.name if pickle_file else "/" + entry.name.lstrip("/")
        problems.extend(_problems(entry, root, pickle_file))
    return problems


def _problems(node: "Description", path: str, pickle_file: bool) -> Iterator[Problem]:
    if node.node != "hashed" and node.problem is not None:
        yield path, node.problem
    if isinstance(node, ContainerDescription):
        for child in node.children:
            yield from _problems(child, _child_path(path, node, child, pickle_file), pickle_file)
    elif isinstance(node, HashedGroupDescription):
        for entry in node.entries:
            if entry.data is not None:
                if entry.layout == "corelay":
                    data_path = f"{path.rstrip('/')}/{entry_path(entry.name)}"
                else:
                    data_path = f"{path.rstrip('/')}/{entry.name}/data"
                yield from _problems(entry.data, data_path, pickle_file)


def _child_path(
    path: str, parent: ContainerDescription, child: "Description", pickle_file: bool
) -> str:
    if not pickle_file:
        return f"{path.rstrip('/')}/{child.name}"
    if parent.kind != "dict" or (
        isinstance(child, OtherDescription) and child.what.startswith(_NON_STR_KEY)
    ):
        return f"{path}[{child.name}]"  # an index, or the repr of a key that is not a str
    return f"{path}[{child.name!r}]"


def _no_progress(done: int, total: int | None) -> None:
    pass


def _detect_format(path: Path, size: int) -> Literal["hdf5", "pickle"]:
    with path.open("rb") as file:
        head = file.read(8)
        if head == _HDF5_SIGNATURE:
            return "hdf5"
        if head[:1] == b"\x80":  # the PROTO opcode every pickle since protocol 2 starts with
            return "pickle"
        # An HDF5 file with a user block has its signature at 512, 1024, 2048, ... bytes.
        offset = 512
        while offset + 8 <= size:
            file.seek(offset)
            if file.read(8) == _HDF5_SIGNATURE:
                return "hdf5"
            offset *= 2
    if size == 0 and path.suffix in _PICKLE_SUFFIXES:
        return "pickle"  # a PickleStorage that was opened for writing and never written
    what = "an empty file" if size == 0 else "neither an HDF5 file nor a file of pickle records"
    raise NotAStorageFileError(f"{str(path)!r} is {what}")


# ---------------------------------------------------------------------------------- HDF5


def _describe_hdf5(path: Path, key: str | None, progress: Progress) -> list["Description"]:
    try:
        file = open_journaled(path, "r")
    except (FileNotFoundError, BlockingIOError):
        raise
    except OSError as error:
        raise NotAStorageFileError(f"{str(path)!r} is not a readable HDF5 file: {error}") from None
    try:
        walker = _HDF5Walker(progress)
        if key is not None:
            *parent_names, name = key.split("/")
            # Not file.get(): it would follow an external link on the way to the key.
            found = _hdf5.open_path(file, parent_names)
            if not isinstance(found, h5py.Group) or not _hdf5.has_member(found, name):
                raise NoDataSource(f"no key {key!r} in {str(path)!r}")
            parent = found
            return [walker.member(parent, name, key, ())]
        if walker.is_hashed_group(file):
            return [walker.hashed_group(file, "/", ())]
        return [
            walker.member(file, name, name, ())
            for name in _names(file)
            if not name.startswith(TEMP_PREFIX)
        ]
    except _hdf5.UnreadableNodeError:
        raise  # a link on the way to the key, named by its path: the file is not damaged
    except _UNREADABLE as error:
        raise NotAStorageFileError(f"{str(path)!r} is damaged: {error}") from None
    finally:
        file.close()


class _HDF5Walker:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.count = 0
        # Every group described so far: a group reached again (a loop, or shared structure that
        # could double at every level) is reported, not described again.
        self.seen: set[object] = set()

    def step(self) -> None:
        self.count += 1
        self.progress(self.count, None)

    def member(
        self, group: h5py.Group, name: str, label: str, ancestors: tuple[object, ...]
    ) -> "Description":
        """Describes ``group[name]`` (``label`` is its name in the description)."""
        self.step()
        try:
            described = self._member(group, name, label, ancestors)
            if isinstance(described, LeafDescription | ContainerDescription):
                obj = group.get(name)  # a hard link: links are OtherDescriptions
                if isinstance(obj, h5py.Group | h5py.Dataset):
                    described = _with_attrs_and_value(described, obj)
            return described
        except _UNREADABLE as error:
            # Damaged metadata, or a member name that is not UTF-8: the rest stays readable.
            return OtherDescription(
                name=label, what="unreadable node", problem=f"cannot be read: {error}"
            )

    def _member(
        self, group: h5py.Group, name: str, label: str, ancestors: tuple[object, ...]
    ) -> "Description":
        link = group.get(name, getlink=True)
        if link is None:  # _names gave the repr of a name that is not UTF-8
            return OtherDescription(
                name=label,
                what="member whose name is not UTF-8 text",
                problem="a member name that is not UTF-8 text: reading refuses it",
            )
        if isinstance(link, h5py.SoftLink):
            if group.get(name) is None:
                return OtherDescription(
                    name=label,
                    what=f"soft link to {link.path!r}",
                    problem=f"dangling soft link to {link.path!r}",
                )
            return OtherDescription(name=label, what=f"soft link to {link.path!r}")
        if isinstance(link, h5py.ExternalLink):
            target = f"{link.filename}:{link.path}"
            return OtherDescription(
                name=label,
                what=f"external link to {target!r}",
                problem=f"external link to {target!r}: read only with follow_external",
            )
        obj = group.get(name)
        if isinstance(obj, h5py.Group):
            if obj.id in ancestors:
                return OtherDescription(
                    name=label,
                    what="hard link to a group that contains it",
                    problem="a group that contains itself: reading it would never end",
                )
            if obj.id in self.seen:
                return OtherDescription(
                    name=label,
                    what="another link to a group described above",
                    problem="a group reached a second time (shared structure): reading refuses it",
                )
            if len(ancestors) >= MAX_DEPTH:
                return OtherDescription(
                    name=label,
                    what="group nested too deep",
                    problem=f"groups nested deeper than {MAX_DEPTH} (MAX_DEPTH): reading refuses "
                    "them",
                )
            self.seen.add(obj.id)
            return self.group(obj, label, (*ancestors, obj.id))
        if isinstance(obj, h5py.Dataset):
            return self.dataset(obj, label)
        return OtherDescription(
            name=label,
            what="named datatype",
            problem="a named datatype is not data: the library cannot read it",
        )

    def group(self, group: h5py.Group, name: str, ancestors: tuple[object, ...]) -> "Description":
        kind = get_str_attr(group, KIND_ATTR)
        if kind is not None and (not isinstance(kind, str) or kind not in _CONTAINER_KINDS):
            wrong_kind = (
                f"the {KIND_ATTR} attribute {kind!r} is not a container kind"
                if isinstance(kind, str)
                else f"the {KIND_ATTR} attribute is not a string"
            )
            return OtherDescription(
                name=name, what="group recording a wrong kind", problem=wrong_kind
            )
        if kind == "dict":
            children = [self.member(group, child, child, ancestors) for child in _names(group)]
            return ContainerDescription(name=name, kind="dict", recorded=True, children=children)
        if kind in ("tuple", "list"):
            sequence_kind: ContainerKind = "tuple" if kind == "tuple" else "list"
            names = _names(group)
            expected = [str(index) for index in range(len(names))]
            problem = None
            if sorted(names) != sorted(expected):
                missing = sorted(set(expected) - set(names), key=int)
                problem = f"incomplete {kind}: " + (
                    f"no item {missing[0]!r}" if missing else "its members are not items 0, 1, ..."
                )
                expected = names
            children = [self.member(group, child, child, ancestors) for child in expected]
            return ContainerDescription(
                name=name, kind=sequence_kind, recorded=True, children=children, problem=problem
            )
        if self.is_hashed_group(group):
            return self.hashed_group(group, name, ancestors)
        return self.foreign_group(group, name, ancestors)

    def foreign_group(
        self, group: h5py.Group, name: str, ancestors: tuple[object, ...]
    ) -> ContainerDescription:
        # Read as corelay 1.0.0 reads groups: names made of digits become int keys.
        names = [child for child in _names(group) if not child.startswith(TEMP_PREFIX)]
        problem = None
        seen: dict[object, str] = {}
        for child in names:
            if not child.isdigit():
                continue
            if not child.isascii():
                problem = f"member name {child!r} is a digit but not a number: it cannot be read"
                break
            number = int(child)
            if number in seen:
                problem = (
                    f"member names {seen[number]!r} and {child!r} both read as key {number}: "
                    "one value would be lost"
                )
                break
            seen[number] = child
        children = [self.member(group, child, child, ancestors) for child in names]
        return ContainerDescription(
            name=name, kind="dict", recorded=False, children=children, problem=problem
        )

    def dataset(self, dataset: h5py.Dataset, name: str) -> "Description":
        kind = get_str_attr(dataset, KIND_ATTR)
        dtype, shape = dataset.dtype, dataset.shape
        stored = dataset.id.get_storage_size()
        info = _hdf5.string_info(dataset)
        problem = _dtype_problem(dtype) or _storage_problem(dataset, stored)
        if kind is not None and not isinstance(kind, str):
            return OtherDescription(
                name=name,
                what="dataset recording a kind that is not a string",
                problem=f"the {KIND_ATTR} attribute is not a string",
            )
        if kind is None:
            leaf_kind: LeafKind
            if shape is None:
                leaf_kind = "none"
            elif info is not None:
                leaf_kind = "str" if shape == () else "ndarray"
            else:
                leaf_kind = "generic" if shape == () else "ndarray"
            return LeafDescription(
                name=name,
                kind=leaf_kind,
                # A numeric array is written without a kind: every reader reads it alike.
                recorded=leaf_kind == "ndarray" and info is None,
                dtype=dtype.str,
                shape=shape,
                nbytes=None if shape is None else _nbytes(dtype, shape),
                stored_bytes=stored,
                string_info=info,
                problem=problem,
            )
        if kind in ("ndarray", "generic") and shape is not None:
            unicode_dtype = get_str_attr(dataset, DTYPE_ATTR) if dtype.kind == "S" else None
            read_dtype = dtype if unicode_dtype is None else np.dtype(str(unicode_dtype))
            if unicode_dtype is not None and info is not None:
                info = StringInfo("utf-8", info.length)
            return LeafDescription(
                name=name,
                kind="ndarray" if kind == "ndarray" else "generic",
                recorded=True,
                dtype=read_dtype.str,
                shape=shape,
                nbytes=_nbytes(read_dtype, shape),
                stored_bytes=stored,
                string_info=info,
                problem=problem,
            )
        scalar_kinds: dict[str, LeafKind] = {
            "bool": "bool",
            "int": "int",
            "float": "float",
            "complex": "complex",
            "str": "str",
            "bytes": "bytes",
            "none": "none",
        }
        scalar_kind = scalar_kinds.get(str(kind))
        if scalar_kind is None:
            return OtherDescription(
                name=name,
                what=f"dataset recording the kind {kind!r}",
                problem=f"the kind {kind!r} recorded on a dataset is not a leaf kind",
            )
        nbytes = None
        if scalar_kind == "bytes" and shape is not None:
            nbytes = _nbytes(dtype, shape)
        return LeafDescription(
            name=name,
            kind=scalar_kind,
            recorded=True,
            nbytes=nbytes,
            stored_bytes=stored,
            string_info=info if scalar_kind == "str" else None,
            problem=problem,
        )

    @staticmethod
    def is_hashed_group(group: h5py.Group) -> bool:
        """Tells whether ``group`` holds only HashedHDF5 entries (at least one complete).

        This library's entries are in groups named by the first digits of their names; those
        of corelay 1.0.0 are groups directly in ``group``.
        """
        found = False
        for name in _names(group):
            if name == META_GROUP or name.startswith(TEMP_PREFIX):
                continue
            if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                return False  # never follow a link out of the file, or into a loop
            member = group.get(name)
            if not isinstance(member, h5py.Group):
                return False
            if _SHARD_NAME.fullmatch(name):
                for entry_name in _names(member):
                    if entry_name.startswith(TEMP_PREFIX):
                        continue
                    entry = member.get(entry_name)
                    if not (
                        _ENTRY_NAME.fullmatch(entry_name)
                        and entry_name.startswith(name)
                        and isinstance(entry, h5py.Group | h5py.Dataset)
                    ):
                        return False
                    found = found or _entry_hashes(entry) is not None
            elif _ENTRY_NAME.fullmatch(name):
                found = found or _is_upstream_entry(member)
            else:
                return False
        return found

    def hashed_group(
        self, group: h5py.Group, name: str, ancestors: tuple[object, ...]
    ) -> HashedGroupDescription:
        found = group.get(META_GROUP)
        meta_group = found if isinstance(found, h5py.Group) else None
        entries: list[HashedEntryDescription] = []
        for member_name in _names(group):
            if member_name == META_GROUP or member_name.startswith(TEMP_PREFIX):
                continue
            if not _SHARD_NAME.fullmatch(member_name):  # where corelay 1.0.0 puts an entry
                entries.append(self.hashed_entry(group, member_name, None, ancestors, True))
                continue
            shard = group.get(member_name)
            if isinstance(shard, h5py.Group):
                for entry_name in _names(shard):
                    if not entry_name.startswith(TEMP_PREFIX):
                        entry = self.hashed_entry(shard, entry_name, meta_group, ancestors)
                        entries.append(entry)
        return HashedGroupDescription(name=name, entries=entries)

    def hashed_entry(
        self,
        parent: h5py.Group,
        name: str,
        meta_group: h5py.Group | None,
        ancestors: tuple[object, ...],
        upstream: bool = False,
    ) -> HashedEntryDescription:
        """Describes the entry ``parent[name]``, of corelay 1.0.0 if ``upstream``."""
        self.step()
        layout: Literal["corelay", "corelay-1.0.0"] = "corelay-1.0.0" if upstream else "corelay"
        try:
            entry = parent.get(name)
            if upstream and isinstance(entry, h5py.Group):
                return HashedEntryDescription(
                    name=name,
                    layout=layout,
                    complete=_is_upstream_entry(entry),
                    input_hash=_json_dataset(entry.get("input")),
                    output_hash=_json_dataset(entry.get("output")),
                    meta=_json_dataset(entry.get("meta")),
                    data=self.member(entry, "data", "data", ancestors) if "data" in entry else None,
                )
            hashes = None if entry is None else _entry_hashes(entry)
            meta = None
            if hashes is not None and meta_group is not None:
                meta_tree = meta_group.get(hashes.meta_hash)
                text = None if meta_tree is None else stored_meta_json(meta_tree)
                if text is not None:  # metadata that JSON holds exactly: already JSON
                    meta = _cut_meta(json.loads(text))
                elif meta_tree is not None:
                    meta = _meta_value(meta_tree)
            return HashedEntryDescription(
                name=name,
                layout=layout,
                complete=hashes is not None,
                input_hash=None if hashes is None else hashes.input_hash,
                output_hash=None if hashes is None else hashes.output_hash,
                meta=meta,
                data=self.member(parent, name, "data", ancestors),
            )
        except _UNREADABLE as error:
            unreadable = OtherDescription(
                name="data", what="unreadable entry", problem=f"cannot be read: {error}"
            )
            return HashedEntryDescription(name=name, layout=layout, complete=False, data=unreadable)


def _names(group: h5py.Group) -> list[str]:
    """The member names of ``group``; h5py gives names that are not UTF-8 as bytes."""
    names: list[object] = list(group)
    return [name if isinstance(name, str) else repr(name) for name in names]


def _entry_hashes(entry: h5py.Group | h5py.Dataset) -> EntryHashes | None:
    """The hashes of a complete entry of this library; ``None`` for any other object."""
    return parse_entry_attr(entry.attrs.get(ENTRY_ATTR))


def _is_upstream_entry(entry: h5py.Group) -> bool:
    """Tells whether ``entry`` is a complete entry of corelay 1.0.0."""
    return all(member in entry for member in _UPSTREAM_ENTRY_MEMBERS)


def _json_dataset(obj: h5py.Group | h5py.Dataset | None) -> JsonValue:
    # corelay 1.0.0 stores input and output hashes and the metadata as JSON strings.
    if not isinstance(obj, h5py.Dataset) or obj.shape != () or _hdf5.string_info(obj) is None:
        return None
    text = str(obj.asstr()[()])
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    return value


def _meta_value(
    obj: h5py.Group | h5py.Dataset, depth: int = 0, seen: set[object] | None = None
) -> JsonValue:
    """A small stored tree as JSON, reading only small datasets (see HashedEntryDescription).

    Each group is shown once (``seen``): groups linked twice at every level would otherwise
    be shown a number of times exponential in the depth.
    """
    if depth > _META_DEPTH:
        return "..."
    if isinstance(obj, h5py.Group):
        seen = set() if seen is None else seen
        if obj.id in seen:
            return "<a group shown before>"
        seen.add(obj.id)
        kind = get_str_attr(obj, KIND_ATTR)
        names = [name for name in _names(obj) if not name.startswith(TEMP_PREFIX)]
        shown = names[:_META_MEMBERS]
        values: list[JsonValue] = []
        for name in shown:
            try:  # never out of the file, nor through a broken link
                child = _hdf5.open_child(obj, name)
            except _UNREADABLE as error:
                values.append(f"<{error}>")
                continue
            values.append(_meta_value(child, depth + 1, seen))
        more = f"{len(names) - len(shown)} more" if len(names) > len(shown) else None
        if kind in ("tuple", "list"):
            return values if more is None else [*values, f"... {more}"]
        members: dict[str, JsonValue] = dict(zip(shown, values, strict=True))
        if more is not None:
            members["..."] = more
        return members
    return _dataset_json(obj, None)


def _cut_meta(value: object, depth: int = 0) -> JsonValue:
    """Metadata stored as JSON, cut short as :func:`_meta_value` cuts a stored tree."""
    if depth > _META_DEPTH:
        return "..."
    if isinstance(value, list):
        items = cast("list[object]", value)
        values = [_cut_meta(item, depth + 1) for item in items[:_META_MEMBERS]]
        more = len(items) - _META_MEMBERS
        return values if more <= 0 else [*values, f"... {more} more"]
    if isinstance(value, dict):
        pairs = list(cast("dict[str, object]", value).items())
        members: dict[str, JsonValue] = {
            key: _cut_meta(item, depth + 1) for key, item in pairs[:_META_MEMBERS]
        }
        if len(pairs) > _META_MEMBERS:
            members["..."] = f"{len(pairs) - _META_MEMBERS} more"
        return members
    return cast(JsonValue, value)  # str, int, float, bool or None: JSON already


def _dataset_json(dataset: h5py.Dataset, limit: int | None) -> JsonValue:
    """The value of ``dataset`` as JSON if it is small, else its dtype and shape.

    ``limit``: the most bytes a str or bytes value may have to be shown (None: any).
    """
    shape = dataset.shape
    if shape is not None and math.prod(shape) > _META_ELEMENTS:
        return {"dtype": dataset.dtype.str, "shape": list(shape)}
    if _dtype_problem(dataset.dtype) is not None:
        return {"dtype": str(dataset.dtype)}
    return _json_value(_hdf5.read_node(dataset), limit)


def _json_value(value: object, limit: int | None = None) -> JsonValue:
    """``value`` (a stored tree, or an HDF5 attribute's value) as JSON.

    See :attr:`LeafDescription.value` and :attr:`HashedEntryDescription.meta`; ``limit`` is the
    most bytes a str or bytes may have (a longer one gives None); None allows any.
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(cast(Any, value))
    if isinstance(value, int | np.integer):
        return int(cast(Any, value))
    if isinstance(value, float | np.floating):
        number = float(cast(Any, value))
        return number if math.isfinite(number) else str(number)
    if isinstance(value, complex | np.complexfloating):
        pair = complex(cast(Any, value))
        return [_json_value(pair.real), _json_value(pair.imag)]
    if isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass"))
        return str(value) if limit is None or size <= limit else None
    if isinstance(value, bytes):
        raw = bytes(value)
        return _bytes_text(raw) if limit is None or len(raw) <= limit else None
    if isinstance(value, np.ndarray):
        array: np.ndarray[Any, Any] = cast(Any, value)
        if array.size > _META_ELEMENTS:
            return {"dtype": array.dtype.str, "shape": list(array.shape)}
        if array.ndim == 0:
            return _json_value(array[()], limit)
        return [_json_value(item, limit) for item in array]
    if isinstance(value, np.generic):
        return _json_value(cast(Any, value).item(), limit)
    if isinstance(value, Mapping):
        items = list(cast("Mapping[object, object]", value).items())
        members = {str(key): _json_value(item, limit) for key, item in items[:_META_MEMBERS]}
        if len(items) > _META_MEMBERS:
            members["..."] = f"{len(items) - _META_MEMBERS} more"
        return members
    if isinstance(value, tuple | list):
        sequence = cast("tuple[object, ...] | list[object]", value)
        values = [_json_value(item, limit) for item in sequence[:_META_MEMBERS]]
        if len(sequence) > _META_MEMBERS:
            values.append(f"... {len(sequence) - _META_MEMBERS} more")
        return values
    return repr(value)  # not reached for what the library stores


def _bytes_text(raw: bytes) -> str:
    # Unambiguous: a backslash is escaped like the bytes that are not printable ASCII.
    return "".join(
        chr(byte) if 32 <= byte < 127 and byte != 92 else f"\\x{byte:02x}" for byte in raw
    )


def _attributes(obj: h5py.Group | h5py.Dataset) -> dict[str, JsonValue]:
    """The attributes of ``obj`` that are not the library's own, reading only small ones."""
    found: dict[str, JsonValue] = {}
    for name in obj.attrs:
        if name.startswith(_OWN_ATTR_PREFIX):
            continue
        try:
            attr = h5a.open(obj.id, name.encode())
            # None for an empty attribute (h5py.Empty), which the stub does not say.
            shape = cast("tuple[int, ...] | None", attr.shape)
            if shape is None:
                found[name] = None
            elif math.prod(shape) > _META_ELEMENTS:
                found[name] = {"dtype": attr.dtype.str, "shape": list(shape)}
            elif _dtype_problem(attr.dtype) is not None:
                found[name] = {"dtype": str(attr.dtype)}
            else:
                found[name] = _json_value(obj.attrs[name], VALUE_BYTES)
        except _UNREADABLE as error:
            found[name] = {"unreadable": str(error)}
    return found


def _with_attrs_and_value(
    described: "LeafDescription | ContainerDescription", obj: h5py.Group | h5py.Dataset
) -> "LeafDescription | ContainerDescription":
    update: dict[str, object] = {}
    attrs = _attributes(obj)
    if attrs:
        update["attrs"] = attrs
    if (
        isinstance(described, LeafDescription)
        and isinstance(obj, h5py.Dataset)
        and described.problem is None
        and described.kind in _SCALAR_KINDS
        and obj.shape is not None
        and (described.kind == "bytes" or obj.shape == ())
        and (described.nbytes is None or described.nbytes <= VALUE_BYTES)
    ):
        # An unreadable value leaves the description as it is: its problems are found without it.
        with contextlib.suppress(*_UNREADABLE):
            update["value"] = _json_value(_hdf5.read_node(obj), VALUE_BYTES)
    return described.model_copy(update=update) if update else described


def _storage_problem(dataset: h5py.Dataset, stored: int) -> str | None:
    """Why reading ``dataset`` is refused by default: its data are elsewhere, or too big."""
    plist = dataset.id.get_create_plist()
    if plist.get_layout() == h5d.VIRTUAL:
        return "a virtual dataset, made of other datasets: read only with follow_external"
    if plist.get_external_count():
        return "a dataset stored in other files: read only with follow_external"
    shape = dataset.shape
    if shape is not None and dataset.dtype.kind != "O":
        beyond = math.prod(shape) * dataset.dtype.itemsize - stored
        if beyond > _hdf5.DEFAULT_MAX_READ_BYTES:
            return (
                f"declares {beyond} bytes more than the file holds for it: read only with "
                f"max_read_bytes raised above {_hdf5.DEFAULT_MAX_READ_BYTES}"
            )
    return None


def _nbytes(dtype: np.dtype[Any], shape: tuple[int, ...]) -> int | None:
    if dtype.kind == "O":
        return None  # variable-length data
    return math.prod(shape) * dtype.itemsize


def _dtype_problem(dtype: np.dtype[Any]) -> str | None:
    """Why the library cannot hold data of ``dtype`` read from an HDF5 dataset, or ``None``."""
    metadata: Mapping[str, Any] = dtype.metadata or {}
    if "ref" in metadata:
        return "object references: the library holds values, not references"
    if h5py.check_string_dtype(dtype) is not None:
        return None
    if "vlen" in metadata:
        return f"variable-length sequences of {metadata['vlen']}: the library cannot hold them"
    if "h5py_opaque" in metadata:
        return f"opaque dtype {dtype}: the library cannot hold it"
    if dtype.fields is not None:
        return f"compound dtype {dtype}: the library cannot hold structured data"
    if dtype.subdtype is not None:
        return f"array dtype {dtype}: the library cannot hold it"
    if dtype.kind == "V":
        return f"opaque dtype {dtype}: the library cannot hold it"
    if dtype.kind == "O":
        return f"object dtype {dtype}: the library cannot hold it"
    try:
        validate(np.empty((0,), dtype=dtype))
    except TypeError:
        return f"dtype {dtype}: the library cannot hold it"
    return None


# ---------------------------------------------------------------------------------- pickle


def _describe_pickle(path: Path, key: str | None, progress: Progress) -> list["Description"]:
    try:
        records = _pickle.RecordFile(path, "r")
    except OSError:
        raise
    except Exception as error:  # a damaged file can make the scan fail in many ways
        raise NotAStorageFileError(
            f"{str(path)!r} is not a readable file of pickle records: {error}"
        ) from None
    try:
        keys = list(records.index)
        if key is not None:
            if key not in records.index:
                raise NoDataSource(f"no key {key!r} in {str(path)!r}")
            keys = [key]
        entries: list[Description] = []
        for done, record_key in enumerate(keys, 1):
            try:
                # Problems by path; deeper values are reported, not described (as deep).
                value = records.load(record_key, checked=False, max_depth=_PICKLE_DEPTH)
            except pickle.UnpicklingError as error:  # a refused global, or not a record
                entries.append(
                    OtherDescription(
                        name=record_key, what="record that cannot be loaded", problem=str(error)
                    )
                )
            except Exception as error:  # a damaged record can fail to load in many ways
                entries.append(
                    OtherDescription(
                        name=record_key,
                        what="record that cannot be loaded",
                        problem=f"damaged record: {type(error).__name__}: {error}",
                    )
                )
            else:
                entries.append(_describe_value(value, record_key))
            progress(done, len(keys))
        return entries
    finally:
        records.file.close()


def _describe_value(value: object, name: str) -> "Description":
    if isinstance(value, dict):
        children: list[Description] = []
        for child_key, item in cast("dict[object, object]", value).items():
            if not isinstance(child_key, str):
                children.append(
                    OtherDescription(
                        name=repr(child_key),
                        what=f"{_NON_STR_KEY}{type(child_key).__name__} key",
                        problem=f"dict key {child_key!r} is {type(child_key).__name__}; "
                        "keys must be str",
                    )
                )
                continue
            child = _describe_value(item, child_key)
            problem = name_problem(child_key)
            if problem is not None and child.node != "hashed":
                child = child.model_copy(update={"problem": f"invalid dict key: {problem}"})
            children.append(child)
        return ContainerDescription(name=name, kind="dict", recorded=True, children=children)
    if type(value) is tuple or type(value) is list:
        items = cast("tuple[object, ...] | list[object]", value)
        return ContainerDescription(
            name=name,
            kind="tuple" if isinstance(items, tuple) else "list",
            recorded=True,
            children=[_describe_value(item, str(index)) for index, item in enumerate(items)],
        )
    try:
        node = validate(value, any_text=True)  # pickle stores every str
    except (TypeError, ValueError) as error:
        reason = str(error).removeprefix("data_out: ").split("; accepted:")[0]
        return OtherDescription(name=name, what=type(value).__qualname__, problem=reason)
    if isinstance(node, ArrayNode | NumpyScalarNode):
        array = cast("np.ndarray[Any, Any] | np.generic[Any]", value)
        small = isinstance(node, NumpyScalarNode) and array.nbytes <= VALUE_BYTES
        return LeafDescription(
            name=name,
            kind=node.kind,
            recorded=True,
            dtype=node.dtype,
            shape=array.shape,
            nbytes=array.nbytes,
            string_info=string_info_of(array.dtype),
            value=_json_value(array, VALUE_BYTES) if small else None,
        )
    scalar = cast(ScalarNode, node)
    nbytes = None
    if isinstance(value, str):
        nbytes = len(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes):
        nbytes = len(value)
    return LeafDescription(
        name=name,
        kind=scalar.kind,
        recorded=True,
        nbytes=nbytes,
        string_info=StringInfo("utf-8", None) if scalar.kind == "str" else None,
        value=_json_value(value, VALUE_BYTES),
    )
