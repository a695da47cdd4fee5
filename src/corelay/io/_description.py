"""The description models of storage files, shown by ``corelay-io inspect`` and ``validate``.

Imported from :mod:`corelay.io.describe`.
"""

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, TypeAlias, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from corelay.io.tree import (
    StringInfo,
)

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
    """The bytes the values take in an HDF5 file (compressed, for a compressed dataset): set
    against :attr:`nbytes`, the share compression saves; None in a pickle file."""

    chunks: tuple[int, ...] | None = None
    """The shape of the chunks an HDF5 dataset is stored in; None if it is stored in one piece
    (contiguous or compact), and in a pickle file."""

    maxshape: tuple[int | None, ...] | None = None
    """The largest shape an HDF5 dataset may grow to, None for an axis without limit (as after
    ``append``); None when it cannot grow, and in a pickle file."""

    compression: str | None = None
    """The compression of an HDF5 dataset's chunks: 'gzip', 'lzf', 'zstd', or 'filter N' for
    another HDF5 filter; None if it is not compressed, and in a pickle file."""

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

    format: Literal["hdf5", "pickle", "zarr"]
    """The file format; 'zarr' for a local Zarr v3 store (a directory)."""

    file_bytes: int
    """The size of the file in bytes; for a Zarr store, of the files in its directory."""

    key: str | None = None
    """The key that was described, or None for the whole file."""

    entries: list[Description]
    """The described key, or every key at the top level of the file (every record key of a
    pickle file), in the file's order."""


Problem: TypeAlias = tuple[str, str]
"""A path in a file and why the library cannot hold the node there."""


class NotAStorageFileError(ValueError):
    """The file is not an HDF5 file or a file of pickle records, or it is damaged."""


#: The start of the name of a dict entry whose key is not a str.
NON_STR_KEY = "dict entry with a "
# Metadata datasets and attributes with up to this many elements are read to show them.
META_ELEMENTS = 16
META_MEMBERS = 64


def json_value(value: object, limit: int | None = None) -> JsonValue:
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
        return [json_value(pair.real), json_value(pair.imag)]
    if isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass"))
        return str(value) if limit is None or size <= limit else None
    if isinstance(value, bytes):
        raw = bytes(value)
        return bytes_text(raw) if limit is None or len(raw) <= limit else None
    if isinstance(value, np.ndarray):
        array: np.ndarray[Any, Any] = cast(Any, value)
        if array.size > META_ELEMENTS:
            return {"dtype": array.dtype.str, "shape": list(array.shape)}
        if array.ndim == 0:
            return json_value(array[()], limit)
        return [json_value(item, limit) for item in array]
    if isinstance(value, np.generic):
        return json_value(cast(Any, value).item(), limit)
    if isinstance(value, Mapping):
        items = list(cast("Mapping[object, object]", value).items())
        members = {str(key): json_value(item, limit) for key, item in items[:META_MEMBERS]}
        if len(items) > META_MEMBERS:
            members["..."] = f"{len(items) - META_MEMBERS} more"
        return members
    if isinstance(value, tuple | list):
        sequence = cast("tuple[object, ...] | list[object]", value)
        values = [json_value(item, limit) for item in sequence[:META_MEMBERS]]
        if len(sequence) > META_MEMBERS:
            values.append(f"... {len(sequence) - META_MEMBERS} more")
        return values
    return repr(value)  # not reached for what the library stores


def bytes_text(raw: bytes) -> str:
    # Unambiguous: a backslash is escaped like the bytes that are not printable ASCII.
    return "".join(
        chr(byte) if 32 <= byte < 127 and byte != 92 else f"\\x{byte:02x}" for byte in raw
    )
