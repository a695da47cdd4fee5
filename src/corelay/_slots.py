"""Slots and plugs: the typed, defaulted values that a Plugboard class is configured with.

Imported from :mod:`corelay.plugboard`, whose documentation describes them.
"""

import reprlib
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
from typing import Any, Generic, Self, TypeGuard, TypeVar, cast, overload

import numpy as np

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


def plug_of(instance: object, name: str) -> "Plug[Any] | None":
    found: object = vars(instance).get(name)
    return found if _is_plug(found) else None


def _is_plug(value: object) -> "TypeGuard[Plug[Any]]":
    return isinstance(value, Plug)


def is_slot(value: object) -> "TypeGuard[Slot[Any]]":
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
        plug: Plug[T] | None = plug_of(instance, self.__name__)
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
        plug: Plug[T] | None = plug_of(instance, self.__name__)
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
        plug: Plug[T] | None = plug_of(instance, self.__name__)
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
