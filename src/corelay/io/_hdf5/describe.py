"""The HDF5 format described from its metadata: groups, datasets and HashedHDF5 entries."""

import json
import re
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
from h5py import h5s

from corelay.io import _hdf5
from corelay.io._description import (
    ContainerDescription,
    ContainerKind,
    Description,
    HashedEntryDescription,
    HashedGroupDescription,
    LeafDescription,
    LeafKind,
    NotAStorageFileError,
    OtherDescription,
    Progress,
)
from corelay.io._hashed import (
    ENTRY_ATTR,
    META_GROUP,
    SHARD_DIGITS,
    EntryHashes,
    parse_entry_attr,
)
from corelay.io._hashed_meta import stored_meta_json
from corelay.io._hdf5 import DTYPE_ATTR, KIND_ATTR, get_str_attr
from corelay.io._hdf5.describe_values import (
    UNREADABLE,
    cut_meta,
    hdf5_dtype_problem,
    json_dataset,
    member_names,
    meta_value,
    nbytes_of,
    storage_problem,
    with_attrs_and_value,
)
from corelay.io._hdf5.lazy import chunks_of, compression_of
from corelay.io._keys import TEMP_PREFIX
from corelay.io.errors import NoDataSource
from corelay.io.tree import (
    MAX_DEPTH,
    StringInfo,
)

_ENTRY_NAME = re.compile(r"[0-9a-f]{32}")
_SHARD_NAME = re.compile(f"[0-9a-f]{{{SHARD_DIGITS}}}")
_UPSTREAM_ENTRY_MEMBERS = ("data", "input", "output")
_CONTAINER_KINDS = ("dict", "tuple", "list")


def describe_hdf5(path: Path, key: str | None, progress: Progress) -> list["Description"]:
    try:
        file = _hdf5.open_journaled(path, "r")
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
            for name in member_names(file)
            if not name.startswith(TEMP_PREFIX)
        ]
    except _hdf5.UnreadableNodeError:
        raise  # a link on the way to the key, named by its path: the file is not damaged
    except UNREADABLE as error:
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
                    described = with_attrs_and_value(described, obj)
            return described
        except UNREADABLE as error:
            # Damaged metadata, or a member name that is not UTF-8: the rest stays readable.
            return OtherDescription(
                name=label, what="unreadable node", problem=f"cannot be read: {error}"
            )

    def _member(
        self, group: h5py.Group, name: str, label: str, ancestors: tuple[object, ...]
    ) -> "Description":
        link = group.get(name, getlink=True)
        if link is None:  # member_names gave the repr of a name that is not UTF-8
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
            children = [
                self.member(group, child, child, ancestors) for child in member_names(group)
            ]
            return ContainerDescription(name=name, kind="dict", recorded=True, children=children)
        if kind in ("tuple", "list"):
            sequence_kind: ContainerKind = "tuple" if kind == "tuple" else "list"
            names = member_names(group)
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
        names = [child for child in member_names(group) if not child.startswith(TEMP_PREFIX)]
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
        layout = _layout(dataset)
        info = _hdf5.string_info(dataset)
        problem = hdf5_dtype_problem(dtype) or storage_problem(dataset, stored)
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
                nbytes=None if shape is None else nbytes_of(dtype, shape),
                stored_bytes=stored,
                string_info=info,
                problem=problem,
                **layout,
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
                nbytes=nbytes_of(read_dtype, shape),
                stored_bytes=stored,
                string_info=info,
                problem=problem,
                **layout,
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
            nbytes = nbytes_of(dtype, shape)
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
        for name in member_names(group):
            if name == META_GROUP or name.startswith(TEMP_PREFIX):
                continue
            if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                return False  # never follow a link out of the file, or into a loop
            member = group.get(name)
            if not isinstance(member, h5py.Group):
                return False
            if _SHARD_NAME.fullmatch(name):
                for entry_name in member_names(member):
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
        for member_name in member_names(group):
            if member_name == META_GROUP or member_name.startswith(TEMP_PREFIX):
                continue
            if not _SHARD_NAME.fullmatch(member_name):  # where corelay 1.0.0 puts an entry
                entries.append(self.hashed_entry(group, member_name, None, ancestors, True))
                continue
            shard = group.get(member_name)
            if isinstance(shard, h5py.Group):
                for entry_name in member_names(shard):
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
                    input_hash=json_dataset(entry.get("input")),
                    output_hash=json_dataset(entry.get("output")),
                    meta=json_dataset(entry.get("meta")),
                    data=self.member(entry, "data", "data", ancestors) if "data" in entry else None,
                )
            hashes = None if entry is None else _entry_hashes(entry)
            meta = None
            if hashes is not None and meta_group is not None:
                meta_tree = meta_group.get(hashes.meta_hash)
                text = None if meta_tree is None else stored_meta_json(meta_tree)
                if text is not None:  # metadata that JSON holds exactly: already JSON
                    meta = cut_meta(json.loads(text))
                elif meta_tree is not None:
                    meta = meta_value(meta_tree)
            return HashedEntryDescription(
                name=name,
                layout=layout,
                complete=hashes is not None,
                input_hash=None if hashes is None else hashes.input_hash,
                output_hash=None if hashes is None else hashes.output_hash,
                meta=meta,
                data=self.member(parent, name, "data", ancestors),
            )
        except UNREADABLE as error:
            unreadable = OtherDescription(
                name="data", what="unreadable entry", problem=f"cannot be read: {error}"
            )
            return HashedEntryDescription(name=name, layout=layout, complete=False, data=unreadable)


def _entry_hashes(entry: h5py.Group | h5py.Dataset) -> EntryHashes | None:
    """The hashes of a complete entry of this library; ``None`` for any other object."""
    return parse_entry_attr(entry.attrs.get(ENTRY_ATTR))


def _is_upstream_entry(entry: h5py.Group) -> bool:
    """Tells whether ``entry`` is a complete entry of corelay 1.0.0."""
    return all(member in entry for member in _UPSTREAM_ENTRY_MEMBERS)


def _layout(dataset: h5py.Dataset) -> dict[str, Any]:
    """The chunks, growth limit and compression of ``dataset``, as description fields."""
    plist = dataset.id.get_create_plist()
    chunks = chunks_of(plist)
    if chunks is None:
        return {}
    space = dataset.id.get_space()
    maximum = space.get_simple_extent_dims(True) if dataset.shape else ()
    shape = dataset.shape or ()
    growth: tuple[int | None, ...] | None = tuple(
        None if limit == h5s.UNLIMITED else int(limit) for limit in maximum
    )
    if growth == shape:
        growth = None
    return {"chunks": chunks, "maxshape": growth, "compression": compression_of(plist)}
