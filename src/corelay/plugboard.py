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
import reprlib
import sys
from collections import OrderedDict
from collections.abc import Mapping
from types import (
    BuiltinFunctionType,
    BuiltinMethodType,
    ClassMethodDescriptorType,
    FunctionType,
    LambdaType,
    MethodDescriptorType,
    MethodType,
    MethodWrapperType,
    WrapperDescriptorType,
)
from typing import Any, ClassVar, Generic, Self, TypeGuard, TypeVar, cast, overload

import numpy as np

__all__ = ["Plug", "Plugboard", "Slot", "SlotDefaults"]

T = TypeVar("T")

_ARRAY_FUNCTION = type(cast(object, np.sum))

#: What else counts as a function where a slot's types include :class:`types.FunctionType`:
#: lambdas, methods, builtins, NumPy ufuncs and NumPy's array functions (which are not
#: FunctionType since NumPy 1.25), so that ``Param(FunctionType, numpy.sum)`` works.
FUNCTION_TYPES: tuple[type, ...] = (
    BuiltinFunctionType,
    BuiltinMethodType,
    ClassMethodDescriptorType,
    LambdaType,
    MethodDescriptorType,
    MethodType,
    MethodWrapperType,
    WrapperDescriptorType,
    np.ufunc,
    _ARRAY_FUNCTION,
)

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


def _as_types(dtype: object, where: str) -> tuple[type, ...]:
    if isinstance(dtype, type):
        return (dtype,)
    if isinstance(dtype, tuple):
        kinds = cast(tuple[object, ...], dtype)
        if kinds and all(isinstance(kind, type) for kind in kinds):
            return cast(tuple[type, ...], kinds)
    raise TypeError(f"{where}: dtype must be a type or a non-empty tuple of types, not {dtype!r}")


def _accepted(types: tuple[type, ...]) -> tuple[type, ...]:
    return types + FUNCTION_TYPES if FunctionType in types else types


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(kind.__name__ for kind in types)


class SlotValueError(TypeError):
    """A slot, or a plug filling it, was given a value it cannot hold.

    A :class:`TypeError`. The message names the slot, and the class it belongs to once known.

    Args:
        slot: The name of the slot.
        problem: What is wrong, for example ``"must be str, not int (3)"``.
    """

    def __init__(self, slot: str, problem: str) -> None:
        super().__init__(slot, problem)
        self.slot = slot
        self.problem = problem
        #: The name of the class the slot belongs to, filled in where the instance is known.
        self.owner = ""

    def __str__(self) -> str:
        name = f"{self.owner}.{self.slot}" if self.owner else (self.slot or "slot")
        return f"{name} {self.problem}"

    def of(self, instance: object) -> Self:
        """Names the class of ``instance`` as the slot's owner in the message.

        Returns:
            This error.
        """
        self.owner = type(instance).__name__
        return self


def _check(types: tuple[type, ...], slot: str, value: object, what: str = "") -> None:
    if value is not None and not isinstance(value, _accepted(types)):
        given = f"{type(value).__name__} ({_short.repr(value)})"
        raise SlotValueError(slot, f"{what}must be {_type_names(types)}, not {given}")


def _plug_of(instance: object, name: str) -> "Plug[Any] | None":
    found: object = vars(instance).get(name)
    return found if _is_plug(found) else None


def _is_plug(value: object) -> "TypeGuard[Plug[Any]]":
    return isinstance(value, Plug)


def _is_slot(value: object) -> "TypeGuard[Slot[Any]]":
    return isinstance(value, Slot)


class Slot(Generic[T]):
    """Describes a value that objects of a class are configured with.

    Declared in a class body as ``name: Annotated[T, Slot(T, default)]`` (or assigned, ``name =
    Slot(T, default)``), it is a descriptor: read on the class, it is the slot itself; read on an
    instance, the value the instance's :class:`Plug` holds (its own value, else its default, else
    the slot's default); assigned on an instance, the value is type-checked first.

    Args:
        dtype: The type, or tuple of types, a value must be an instance of. Where it includes
            :class:`types.FunctionType`, every kind of function in :data:`FUNCTION_TYPES` counts.
        default: The value of instances that set none; ``None`` if there is none (the slot is then
            mandatory: reading it unset is a :class:`TypeError`).

    Raises:
        TypeError: ``dtype`` is not a type or a tuple of types, or ``default`` is not one of them.
    """

    #: The name the slot has in its class, set when the class is created.
    __name__: str

    @overload
    def __init__(self: "Slot[Any]", *, default: object = None) -> None: ...
    @overload
    def __init__(self, dtype: type[T] | tuple[type[T], ...], default: T | None = None) -> None: ...
    def __init__(self, dtype: object = object, default: Any = None) -> None:
        self.__name__ = ""
        self._dtype = _as_types(dtype, type(self).__name__)
        self._default: T | None = default
        self._consistent()

    def _consistent(self) -> None:
        """Raises :class:`TypeError` unless the types are types and the default is one of them."""
        self._dtype = _as_types(self._dtype, f"{type(self).__name__} {self.__name__!r}")
        _check(self._dtype, self.__name__, self.default, "default ")

    @property
    def dtype(self) -> tuple[type, ...]:
        """The types a value may have, always as a tuple; may be set to a type or a tuple.

        Raises:
            TypeError: (when set) not a type or tuple of types, or the default is not one of them.
        """
        return self._dtype

    @dtype.setter
    def dtype(self, value: type | tuple[type, ...]) -> None:
        new = _as_types(value, f"{type(self).__name__} {self.__name__!r}")
        _check(new, self.__name__, self.default, "default ")
        self._dtype = new

    @property
    def default(self) -> T | None:
        """The value of instances that set none, or ``None``; deleting it makes the slot mandatory.

        Raises:
            TypeError: (when set) the value is not one of the slot's types.
        """
        return self._default

    @default.setter
    def default(self, value: T | None) -> None:
        _check(self._dtype, self.__name__, value, "default ")
        self._default = value

    @default.deleter
    def default(self) -> None:
        self._default = None

    @property
    def optional(self) -> bool:
        """Whether the slot has a default, so that instances need not set a value."""
        return self.default is not None

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    def __call__(self, obj: T | None = None, default: T | None = None) -> "Plug[T]":
        """Makes a plug for this slot.

        Args:
            obj: The plug's own value, or ``None``.
            default: The plug's own default, or ``None``.

        Raises:
            TypeError: A value is not one of the slot's types, or the plug would have no value.

        Returns:
            The new plug.
        """
        return Plug(self, obj=obj, default=default)

    def get_plug(
        self, instance: object, obj: T | None = None, default: T | None = None
    ) -> "Plug[T]":
        """Returns the plug that holds ``instance``'s value, made if it has none yet.

        Args:
            instance: An instance of a class that has this slot.
            obj: The value of a new plug.
            default: The default of a new plug.

        Raises:
            TypeError: A new plug would have no value, or a value of the wrong type.

        Returns:
            The plug, stored in ``instance.__dict__`` under the slot's name.
        """
        plug: Plug[T] | None = _plug_of(instance, self.__name__)
        if plug is not None:
            return plug
        try:
            made = self(obj=obj, default=default)
        except SlotValueError as error:
            error.of(instance)
            raise
        vars(instance)[self.__name__] = made
        return made

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    # mypy applies __get__ to the value of a property whose type is a descriptor, so without
    # this, ``plug.slot`` would read as the slot's value type. A slot is never a class
    # attribute of a plug.
    @overload
    def __get__(self, instance: "Plug[Any]", owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type[Any] | None = None) -> Self | T:
        if instance is None:
            return self
        plug: Plug[T] | None = _plug_of(instance, self.__name__)
        if plug is None:
            if self.default is None:
                raise SlotValueError(self.__name__, "is not set and has no default").of(instance)
            plug = self.get_plug(instance)
        return plug.obj

    def __set__(self, instance: object, value: T | None) -> None:
        """Sets the value of ``instance``; ``None`` goes back to the defaults.

        Raises:
            TypeError: The value is not one of the slot's types, or it is ``None`` and there is no
                default.
        """
        plug: Plug[T] | None = _plug_of(instance, self.__name__)
        try:
            if plug is not None:
                plug.obj = value
            else:
                self.get_plug(instance, obj=value)
        except SlotValueError as error:
            error.of(instance)
            raise

    def __delete__(self, instance: object) -> None:
        """Drops the value of ``instance``, which goes back to the defaults.

        Raises:
            TypeError: There is no default to go back to.
        """
        try:
            del self.get_plug(instance).obj
        except SlotValueError as error:
            error.of(instance)
            raise

    def __repr__(self) -> str:
        # Sphinx renders ``Annotated`` metadata with repr() and resolves the result as a
        # cross-reference: the qualified name of the class, shortened by the tilde.
        return f"~{type(self).__module__}.{type(self).__qualname__}"


class Plug(Generic[T]):
    """Holds the value one object has for a :class:`Slot`.

    The value is the plug's own :attr:`obj` if set, else its own :attr:`default` if set, else the
    slot's default (:attr:`fallback`). A plug always has a value of the slot's types: a change
    that would break this raises :class:`TypeError` and leaves the plug as it was.

    Args:
        slot: The slot the plug fills.
        obj: The plug's own value, or ``None``.
        default: The plug's own default, or ``None``.

    Raises:
        TypeError: A value is not one of the slot's types, or the plug would have no value.
    """

    def __init__(self, slot: Slot[T], obj: T | None = None, default: T | None = None) -> None:
        self._slot = slot
        self._obj = obj
        self._default = default
        self._consistent()

    def _consistent(self) -> None:
        """Raises :class:`TypeError` unless the plug has a value, and all of the slot's types."""
        types, name = self._slot.dtype, self._slot.__name__
        _check(types, name, self._obj)
        _check(types, name, self._default, "default ")
        if self._obj is None and self.default is None:
            raise SlotValueError(name, "is not set and has no default")

    def _change(self, attribute: str, value: object) -> None:
        # Set, check, and put the old value back if the check fails: a plug stays consistent.
        old = vars(self)[attribute]
        vars(self)[attribute] = value
        try:
            self._consistent()
        except TypeError:
            vars(self)[attribute] = old
            raise

    @property
    def slot(self) -> Slot[T]:
        """The slot the plug fills; may be replaced by another whose types fit the plug's values.

        Raises:
            TypeError: (when set) the plug's values do not fit the new slot, or it would have none.
        """
        return self._slot

    @slot.setter
    def slot(self, value: Slot[T]) -> None:
        self._change("_slot", value)

    @property
    def is_set(self) -> bool:
        """Whether the plug holds a value of its own (not only defaults)."""
        return self._obj is not None

    @property
    def dtype(self) -> type | tuple[type, ...]:
        """The slot's type, or its tuple of types if it has several."""
        types = self._slot.dtype
        return types[0] if len(types) == 1 else types

    @property
    def optional(self) -> bool:
        """Whether the plug has a default (its own or the slot's) to fall back to."""
        return self.default is not None

    @property
    def fallback(self) -> T | None:
        """The slot's default, or ``None``."""
        return self._slot.default

    @property
    def obj(self) -> T:
        """The value: the plug's own, else its default, else the slot's default.

        Setting ``None`` (or deleting it) drops the plug's own value.

        Raises:
            TypeError: (when set) the value is not one of the slot's types, or the plug would have
                no value.
        """
        value = self._obj if self._obj is not None else self.default
        if value is None:
            raise SlotValueError(self._slot.__name__, "is not set and has no default")
        return value

    @obj.setter
    def obj(self, value: T | None) -> None:
        self._change("_obj", value)

    @obj.deleter
    def obj(self) -> None:
        self._change("_obj", None)

    @property
    def default(self) -> T | None:
        """The plug's own default, else the slot's default, else ``None``.

        Setting ``None`` (or deleting it) drops the plug's own default.

        Raises:
            TypeError: (when set) the value is not one of the slot's types, or the plug would have
                no value.
        """
        return self._default if self._default is not None else self.fallback

    @default.setter
    def default(self, value: T | None) -> None:
        self._change("_default", value)

    @default.deleter
    def default(self) -> None:
        self._change("_default", None)

    def __repr__(self) -> str:
        return f"Plug({self._slot.__name__!r}, obj={self._obj!r}, default={self._default!r})"


def _slot_of(board: "Plugboard", name: str) -> Slot[Any]:
    found: object = board.collect(Slot).get(name)
    if not _is_slot(found):
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
        plug = _plug_of(board, name)
        return slot.default if plug is None else plug.default

    def __setattr__(self, name: str, value: Any) -> None:
        board: Plugboard = object.__getattribute__(self, "_board")
        slot = _slot_of(board, name)
        plug = _plug_of(board, name)
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
        plug = _plug_of(board, name)
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
    return next((meta for meta in metadata if _is_slot(meta)), None)


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

    def at(self, **kwargs: Any) -> Self:
        """Returns a shallow copy that differs only in the given slot values.

        The copy shares every other attribute (an open file, for example) with this instance,
        which is left unchanged.

        Args:
            **kwargs: New values of slots.

        Raises:
            TypeError: A name is not a slot, or a value has the wrong type.

        Returns:
            The copy.
        """
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
            plug = _plug_of(view, name)
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
