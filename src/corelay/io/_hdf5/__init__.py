"""The HDF5 format: stored trees to and from h5py groups and datasets, in journaled files.

Layout: a dict, tuple or list is a group (dict keys or item indices as member names); every leaf
is a dataset. The node kind is an attribute, so that a tree reads back exactly; files without it
(written by other tools) read as plain groups and datasets. A numeric array of one or more
dimensions needs no attribute, as a plain dataset reads back as exactly that array; leaving it
out saves a third of the cost of writing a small array.

The modules: :mod:`.layout` (attributes, errors, reaching nodes), :mod:`.read`,
:mod:`.write` (writing a tree, replacing a node), :mod:`.files` (opening files through the journal,
rolling a failed write back),
:mod:`.describe` (what ``inspect`` and ``validate`` show) and :mod:`.storage`
(:class:`~corelay.io.storage.HDF5Storage`).
"""

from corelay.io._hdf5.files import interrupts_deferred, open_journaled, roll_back
from corelay.io._hdf5.layout import (
    DTYPE_ATTR,
    KIND_ATTR,
    DanglingLinkError,
    find,
    get_str_attr,
    has_member,
    is_plain_array,
    open_child,
    open_path,
)
from corelay.io._hdf5.read import (
    ReadLimits,
    read_array,
    read_node,
    string_info,
)
from corelay.io._hdf5.write import create_dataset, create_group, replacing, write_node
from corelay.io.errors import UnreadableNodeError
from corelay.io.tree import DEFAULT_MAX_READ_BYTES

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "DTYPE_ATTR",
    "KIND_ATTR",
    "DanglingLinkError",
    "ReadLimits",
    "UnreadableNodeError",
    "create_dataset",
    "create_group",
    "find",
    "get_str_attr",
    "has_member",
    "interrupts_deferred",
    "is_plain_array",
    "open_child",
    "open_journaled",
    "open_path",
    "read_array",
    "read_node",
    "replacing",
    "roll_back",
    "string_info",
    "write_node",
]
