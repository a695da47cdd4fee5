"""Typed parameters of pipeline objects: slots, the plugs that fill them, and plugboards.

A :class:`Slot` describes a value that objects of a class are configured with: the type (or
types) it must have and a default. The value an object holds for a slot lives in a :class:`Plug`
stored in the object's ``__dict__`` under the slot's name; the plug has a value of its own, a
default of its own, and falls back to the slot's default. A :class:`Plugboard` subclass declares
its slots as annotations, ``name: Annotated[T, Slot(T, default)]`` (so that type checkers see a
plain ``T``), accepts them as keyword arguments, and lets each instance change its defaults.

This is the behaviour corelay's processors and pipelines are built on; the storages of
:mod:`corelay.io.storage` are plugboards too, with :class:`~corelay.base.Param` slots.
"""

import copy
import inspect
import sys
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar, Self, cast, overload

from corelay._slots import FUNCTION_TYPES, Plug, Slot, SlotValueError, is_slot, plug_of

__all__ = ["FUNCTION_TYPES", "Plug", "Plugboard", "Slot", "SlotDefaults", "SlotValueError"]

# Defined in corelay._slots, public here: their repr (a Sphinx reference) and the
# documentation name this module.
Plug.__module__ = Slot.__module__ = SlotValueError.__module__ = __name__


def _slot_of(board: "Plugboard", name: str) -> Slot[Any]:
    found: object = board.collect(Slot).get(name)
    if not is_slot(found):
        raise AttributeError(f"{type(board).__name__} has no slot {name!r}")
    return found


class SlotDefaults:
    """The defaults of one plugboard's slots, as attributes: ``board.default.name``.

    Reading gives the default the instance falls back to (its plug's, else the slot's, else
    ``None``); assigning sets the instance's own default, type-checked; deleting drops it (a slot
    with no value of the instance's own and no default is then unset again). Only this instance
    is affected, never the class or other instances.

    Args:
        board: The plugboard whose defaults these are.
    """

    __slots__ = ("_board",)

    def __init__(self, board: "Plugboard") -> None:
        object.__setattr__(self, "_board", board)

    def __getattr__(self, name: str) -> Any:
        board: Plugboard = object.__getattribute__(self, "_board")
        slot = _slot_of(board, name)
        plug = plug_of(board, name)
        return slot.default if plug is None else plug.default

    def __setattr__(self, name: str, value: Any) -> None:
        board: Plugboard = object.__getattribute__(self, "_board")
        slot = _slot_of(board, name)
        plug = plug_of(board, name)
        try:
            if plug is not None:
                plug.default = value
            else:
                slot.get_plug(board, default=value)
        except SlotValueError as error:
            error.of(board)
            raise

    def __delattr__(self, name: str) -> None:
        board: Plugboard = object.__getattribute__(self, "_board")
        _slot_of(board, name)
        plug = plug_of(board, name)
        if plug is not None:
            if plug.is_set:
                del plug.default
            else:
                # Nothing of the instance's own is left: back to the state of a new instance
                # (a slot with no default is then simply unset, not an inconsistent plug).
                del vars(board)[name]

    def __dir__(self) -> list[str]:
        board: Plugboard = object.__getattribute__(self, "_board")
        return list(board.collect(Slot))


class _DefaultsAttribute:
    """The ``default`` attribute of plugboards: a :class:`SlotDefaults` of the instance."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, instance: "Plugboard", owner: type[Any] | None = None) -> SlotDefaults: ...
    def __get__(
        self, instance: "Plugboard | None", owner: type[Any] | None = None
    ) -> "Self | SlotDefaults":
        return self if instance is None else SlotDefaults(instance)

    def __set__(self, instance: "Plugboard", value: Mapping[str, Any]) -> None:
        """Sets several defaults at once from a mapping of slot names to values.

        Raises:
            TypeError: ``value`` is not a mapping, or a value is not one of its slot's types.
            AttributeError: A name is not a slot.
        """
        if not isinstance(cast(object, value), Mapping):
            raise TypeError(
                f"{type(instance).__name__}.default can only be assigned a mapping of slot "
                f"names to defaults, not {type(value).__name__}"
            )
        defaults = SlotDefaults(instance)
        for name, default in value.items():
            setattr(defaults, name, default)


def _annotations(cls: type) -> dict[str, Any]:
    annotations = dict(inspect.get_annotations(cls))
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(module)) if module is not None else {}
    for name, hint in annotations.items():
        if isinstance(hint, str):
            # ``from __future__ import annotations``: an Annotated declaration can only be
            # recognised once evaluated. One that cannot be evaluated yet declares no slot.
            try:
                annotations[name] = eval(hint, namespace, dict(vars(cls)))
            except Exception:
                continue
    return annotations


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _first_slot(metadata: tuple[object, ...]) -> "Slot[Any] | None":
    return next((meta for meta in metadata if is_slot(meta)), None)


def _track(cls: type) -> "OrderedDict[str, Any]":
    """Installs the slots ``cls`` declares with ``Annotated`` and returns its tracked attributes."""
    tracked: OrderedDict[str, Any] = OrderedDict()
    for base in reversed(cls.__mro__[1:]):
        tracked.update(getattr(base, "__tracked__", {}))
    tracked.update((name, value) for name, value in vars(cls).items() if not _is_dunder(name))
    for name, hint in _annotations(cls).items():
        slot = _first_slot(getattr(hint, "__metadata__", ()))
        if slot is not None and not _is_dunder(name):
            setattr(cls, name, slot)
            slot.__set_name__(cls, name)
            tracked[name] = slot
    return tracked


class Plugboard:
    """The base class of objects configured by :class:`Slot` parameters.

    A subclass declares slots as annotations, ``name: Annotated[T, Slot(T, default)]``;
    instances accept them as keyword arguments (``None`` keeps the default), type-checked,
    :attr:`default` reads and changes the defaults of one instance, and :meth:`at` makes a copy
    with other values.

    Args:
        **kwargs: Values of slots. Other names go to the next class's ``__init__`` (cooperative
            multiple inheritance); if there is none, they are a :class:`TypeError`.

    Raises:
        TypeError: A name is not a slot of the class, or a value has the wrong type.
    """

    #: The class attributes that are not ``__dunder__`` names, the declared slots included, of
    #: the class and its bases, in declaration order.
    __tracked__: ClassVar[OrderedDict[str, Any]] = OrderedDict()

    #: The defaults of this instance's slots, as attributes (:class:`SlotDefaults`); assigning a
    #: mapping of names to values sets several at once.
    default = _DefaultsAttribute()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__tracked__ = _track(cls)

    def __init__(self, **kwargs: Any) -> None:
        slots = self.collect(Slot)
        others = {name: value for name, value in kwargs.items() if name not in slots}
        if others and _next_init(type(self)) is object.__init__:
            raise TypeError(
                f"{type(self).__name__} has no parameter {next(iter(others))!r}; parameters: "
                f"{', '.join(slots) or 'none'}"
            )
        super().__init__(**others)
        for name, value in kwargs.items():
            if name in slots:
                setattr(self, name, value)

    @classmethod
    def collect(cls, dtype: type | tuple[type, ...]) -> "OrderedDict[str, Any]":
        """Returns the tracked class attributes that are instances of ``dtype``, by name.

        For example ``collect(Slot)``: all slots, in declaration order.

        Args:
            dtype: A type or a tuple of types.
        """
        return OrderedDict(
            (name, value) for name, value in cls.__tracked__.items() if isinstance(value, dtype)
        )

    def collect_attr(self, dtype: type | tuple[type, ...]) -> "OrderedDict[str, Any]":
        """Returns this instance's values of the tracked attributes that are instances of ``dtype``.

        For example ``collect_attr(Param)``: every parameter's value, by name. A slot that has no
        value (not set, no default) gives ``None``.

        Args:
            dtype: A type or a tuple of types.
        """
        values: OrderedDict[str, Any] = OrderedDict()
        for name in self.collect(dtype):
            try:
                values[name] = getattr(self, name, None)
            except SlotValueError:
                values[name] = None
        return values

    def get_attr(self, attribute_name: str) -> Any:
        """Returns this instance's value of a tracked attribute.

        Args:
            attribute_name: The name of the attribute.

        Raises:
            AttributeError: The class tracks no such attribute.
        """
        if attribute_name not in self.__tracked__:
            raise AttributeError(
                f"{type(self).__name__} has no tracked attribute {attribute_name!r}"
            )
        return getattr(self, attribute_name)

    def update_defaults(self, **kwargs: Any) -> None:
        """Sets this instance's defaults of the given slots (its values, if set, stay).

        Args:
            **kwargs: New defaults, by slot name.

        Raises:
            AttributeError: A name is not a slot.
            TypeError: A value is not one of its slot's types.
        """
        defaults = SlotDefaults(self)
        for name, value in kwargs.items():
            setattr(defaults, name, value)

    def reset_defaults(self) -> None:
        """Drops this instance's own defaults: every slot falls back to the slot's default."""
        defaults = SlotDefaults(self)
        for name in self.collect(Slot):
            delattr(defaults, name)

    # ``*args: Any, **kwargs: Any`` reads as "any signature" to type checkers, so that a subclass
    # may name the slots it takes (a typo is then an error in the checker); none is positional.
    def at(self, *args: Any, **kwargs: Any) -> Self:
        """Returns a shallow copy that differs only in the given slot values.

        The copy shares every other attribute (an open file, for example) with this instance,
        which is left unchanged.

        Args:
            *args: None accepted: slots are given by name.
            **kwargs: New values of slots.

        Raises:
            TypeError: A positional argument, a name that is not a slot, or a value of the wrong
                type.

        Returns:
            The copy.
        """
        if args:
            raise TypeError(f"{type(self).__name__}.at() takes slot values by name only")
        slots = self.collect(Slot)
        for name in kwargs:
            if name not in slots:
                raise TypeError(
                    f"{type(self).__name__} has no parameter {name!r}; parameters: "
                    f"{', '.join(slots) or 'none'}"
                )
        view = copy.copy(self)
        state = vars(view)
        for name in list(state):
            plug = plug_of(view, name)
            if plug is not None:
                state[name] = copy.copy(plug)
        for name, value in kwargs.items():
            setattr(view, name, value)
        return view


def _next_init(cls: type) -> object:
    mro = cls.__mro__
    for klass in mro[mro.index(Plugboard) + 1 :]:
        if "__init__" in vars(klass):
            return vars(klass)["__init__"]
    return object.__init__


Plugboard.__tracked__ = _track(Plugboard)
