"""A loaded record as the tree a storage returns, without recursion, within a budget."""

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Final, cast

import numpy as np

from corelay.io._pickle.safe import (
    ArraySpec,
    CorruptRecordError,
    DTypeSpec,
    Function,
    RefusedValueError,
    ScalarSpec,
    make_array,
    make_scalar,
)
from corelay.io.tree import DictNode, Node, SequenceNode, validate


def plain(value: Any, node: Node) -> Any:
    # The validated tree in plain types, so that the file references no class of the caller's
    # (an OrderedDict subclass, a memmap) and loads with the allowed globals only.
    if isinstance(node, DictNode):
        return {key: plain(item, node.children[key]) for key, item in value.items()}
    if isinstance(node, SequenceNode):
        items = [plain(item, item_node) for item, item_node in zip(value, node.items, strict=True)]
        return tuple(items) if node.kind == "tuple" else items
    if node.kind == "ndarray" and type(value) is not np.ndarray:
        return value.view(np.ndarray)
    if node.kind == "generic" and type(value) is not value.dtype.type:
        return value.dtype.type(value)
    return value


# ---------------------------------------------------------------------------------- reading


#: How many tree nodes a record may expand to, per opcode walked, plus :data:`NODE_SLACK`. A
#: tree pickled as a tree has at most one node per opcode; a record that reuses a container
#: through the memo (a list held twice) reads back as copies, and a few of those fit the budget,
#: but a chain of reuses (which doubles the tree at every link) is refused within it.
NODES_PER_OPCODE: Final = 4
NODE_SLACK: Final = 1 << 16

_CONTAINERS: Final = (dict, OrderedDict, list, tuple, set, frozenset)
#: What a dict key or set member may be in a returned value: hashable plain values.
_KEY_TYPES: Final = (str, bytes, int, float, complex, bool, type(None))


class _Frame:
    """A container being read: its items still to read and the items read so far."""

    __slots__ = ("items", "label", "parent", "read", "source")

    def __init__(self, source: object, label: object, parent: "_Frame | None") -> None:
        self.items: Iterator[tuple[object, object]]
        self.source = source
        self.label = label
        self.parent = parent
        self.read: list[tuple[object, object]] = []
        if isinstance(source, dict):
            self.items = iter(cast("dict[object, object]", source).items())
        elif isinstance(source, set | frozenset):
            members = cast("set[object] | frozenset[object]", source)
            self.items = iter([(None, member) for member in members])
        else:
            self.items = enumerate(cast("list[object] | tuple[object, ...]", source))


def _path(frame: _Frame | None, label: object) -> str:
    """The path of item ``label`` of ``frame``, like ``data['a'][0]``."""
    labels = [label]
    while frame is not None and frame.parent is not None:
        labels.append(frame.label)
        frame = frame.parent
    # The last label is the index of the value in the reader's wrapper tuple: not a path.
    return "data" + "".join(f"[{item!r}]" for item in reversed(labels[:-1]))


def _container_path(frame: _Frame) -> str:
    return _path(frame.parent, frame.label)


class _Reader:
    """Turns a loaded record's data into the value a storage returns, without recursion."""

    def __init__(self, limit: int | None, checked: bool, max_depth: int | None) -> None:
        self.limit = limit
        self.checked = checked
        self.max_depth = max_depth
        self.nodes = 0
        self.made: dict[int, object] = {}  # arrays and scalars by description: made once

    def leaf(self, value: object, frame: _Frame, label: object) -> object:
        if isinstance(value, ArraySpec | ScalarSpec):
            made = self.made.get(id(value))
            if made is None:
                try:
                    made = make_array(value) if isinstance(value, ArraySpec) else make_scalar(value)
                except (CorruptRecordError, RefusedValueError) as error:
                    raise type(error)(f"{_path(frame, label)}: {error}") from None
                self.made[id(value)] = made
            value = made
        elif isinstance(value, type | DTypeSpec | Function):  # what only builds leaves
            raise CorruptRecordError(f"{_path(frame, label)}: a bare dtype, class or function")
        if self.checked:
            self.check(value, frame, label)
        return value

    def check(self, value: object, frame: _Frame, label: object) -> None:
        try:
            validate(value, "data", any_text=True)  # pickle stores every str
        except (TypeError, ValueError) as error:
            message = str(error).removeprefix("data: ").split("; accepted:")[0]
            raise CorruptRecordError(
                f"not a stored tree: {_path(frame, label)}: {message}"
            ) from None

    def key(self, key: object, frame: _Frame, what: str) -> object:
        """A dict key or set member, checked hashable and plain; NumPy scalars are made."""
        if isinstance(key, ScalarSpec):
            return self.leaf(key, frame, what)
        if type(key) is tuple:
            members = cast("tuple[object, ...]", key)
            self.count(len(members))
            if any(type(member) is tuple for member in members):
                raise CorruptRecordError(
                    f"not a stored tree: {_container_path(frame)}: a {what} is a tuple within "
                    "a tuple"
                )
            return tuple(self.key(member, frame, what) for member in members)
        if self.checked and type(key) not in _KEY_TYPES:
            raise CorruptRecordError(
                f"not a stored tree: {_container_path(frame)}: {what} {key!r} of type "
                f"{type(key).__name__}"
            )
        return key

    def count(self, nodes: int) -> None:
        self.nodes += nodes
        if self.limit is not None and self.nodes > self.limit:
            raise CorruptRecordError(
                f"shared structure: with the containers it reuses through the pickle memo "
                f"expanded, the record's tree has more than {self.limit} nodes"
            )

    def finish(self, frame: _Frame) -> object:
        source = frame.source
        if isinstance(source, dict):
            pairs = [(self.key(key, frame, "dict key"), item) for key, item in frame.read]
            if self.checked:
                self.check_keys({key: None for key, _ in pairs if isinstance(key, str)}, frame)
            result = OrderedDict(pairs)
            if len(result) != len(pairs):
                raise CorruptRecordError(f"{_container_path(frame)}: dict keys that collide")
            return result
        if isinstance(source, set | frozenset):
            members = [self.key(member, frame, "set member") for _, member in frame.read]
            made_set = set(members) if isinstance(source, set) else frozenset(members)
            if len(made_set) != len(members):
                raise CorruptRecordError(f"{_container_path(frame)}: set members that collide")
            return made_set
        items = [item for _, item in frame.read]
        return tuple(items) if isinstance(source, tuple) else items

    def check_keys(self, names: dict[str, None], frame: _Frame) -> None:
        try:
            validate(names, "data")  # the key rules of stored trees, whatever they are
        except (TypeError, ValueError) as error:
            message = str(error).removeprefix("data: ")
            raise CorruptRecordError(
                f"not a stored tree: {_container_path(frame)}: {message}"
            ) from None

    def read(self, value: object) -> Any:
        root = _Frame((value,), None, None)
        stack = [root]
        active = {id(root.source)}  # the containers being read: one met again is a cycle
        while True:
            frame = stack[-1]
            for label, item in frame.items:
                self.count(1)
                if type(item) in _CONTAINERS:
                    if id(item) in active:
                        raise CorruptRecordError(
                            f"{_path(frame, label)}: a container that contains itself"
                        )
                    if self.max_depth is not None and len(stack) > self.max_depth:
                        raise CorruptRecordError(
                            f"{_path(frame, label)}: containers nested deeper than {self.max_depth}"
                        )
                    active.add(id(item))
                    stack.append(_Frame(item, label, frame))
                    break
                frame.read.append((label, self.leaf(item, frame, label)))
            else:
                stack.pop()
                active.discard(id(frame.source))
                if not stack:
                    return frame.read[0][1]
                stack[-1].read.append((frame.label, self.finish(frame)))


def read_form(
    value: object,
    *,
    limit: int | None = None,
    checked: bool = False,
    max_depth: int | None = None,
) -> Any:
    """Returns a loaded tree as storages return trees, walking it without recursion.

    Every dict becomes an ``OrderedDict``, every described array and scalar is made, after it
    is checked; an array or scalar the record holds twice is made once.

    Args:
        value: The data of a loaded record.
        limit: The most nodes the returned tree may have (containers met twice count twice).
        checked: Whether to raise unless the value is a stored tree, or one of the plain values
            corelay 1.0.0 could write besides: dicts with keys that are not ``str`` (``int``,
            ``float``, ``bytes``, ``None``, a NumPy scalar, a tuple of these...) and sets or
            frozensets of such values.
        max_depth: The most containers the returned tree may nest (the root is at depth 1);
            ``None`` for any depth.

    Raises:
        CorruptRecordError: The value is not one a storage returns, contains itself, has
            more nodes than ``limit``, or nests deeper than ``max_depth``.
        RefusedValueError: The value holds an object array.
    """
    return _Reader(limit, checked, max_depth).read(value)


def check_record(record: object, where: str) -> tuple[str, object]:
    if not isinstance(record, dict):
        raise CorruptRecordError(f"{where}: not a PickleStorage record but {type(record).__name__}")
    fields = cast("dict[object, object]", record)
    key = fields.get("key")
    if "data" not in fields or not isinstance(key, str):
        raise CorruptRecordError(f"{where}: not a {{'data': ..., 'key': str}} record")
    return key, fields["data"]


# ---------------------------------------------------------------------------------- scanning
