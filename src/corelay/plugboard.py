"""A small base class for objects configured by typed keyword parameters."""

import copy
from collections import OrderedDict
from typing import Annotated, Any, ClassVar, Self, get_args, get_origin

from corelay.base import Param

__all__ = ["Plugboard"]


class Plugboard:
    """Holds the keyword parameters declared with :class:`~corelay.base.Param` annotations.

    A subclass declares ``name: Annotated[T, Param(T)]``; instances then accept ``name=...`` as
    a keyword argument, type-checked, and :meth:`at` makes a shallow copy with other values.
    """

    #: The declared parameters of the class and its bases, in declaration order.
    __tracked__: ClassVar[OrderedDict[str, Param]] = OrderedDict()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tracked: OrderedDict[str, Param] = OrderedDict()
        for base in reversed(cls.__mro__[1:]):
            tracked.update(getattr(base, "__tracked__", {}))
        # Annotations are evaluated objects here: modules declaring parameters do not use
        # ``from __future__ import annotations``.
        for name, hint in vars(cls).get("__annotations__", {}).items():
            if get_origin(hint) is Annotated:
                params = [meta for meta in get_args(hint)[1:] if isinstance(meta, Param)]
                if params and not name.startswith("_"):
                    tracked[name] = params[0]
        cls.__tracked__ = tracked

    def __init__(self, **kwargs: Any) -> None:
        """Sets every declared parameter, from ``kwargs`` or its default.

        Args:
            **kwargs: Values of declared parameters.

        Raises:
            TypeError: A name is not a declared parameter, or a value has the wrong type.
        """
        for name, param in self.__tracked__.items():
            setattr(self, name, param.default)
        self._set_params(kwargs)

    def _set_params(self, values: dict[str, Any]) -> None:
        owner = type(self).__name__
        for name, value in values.items():
            param = self.__tracked__.get(name)
            if param is None:
                accepted = ", ".join(self.__tracked__) or "none"
                raise TypeError(f"{owner} has no parameter {name!r}; parameters: {accepted}")
            param.check(owner, name, value)
        for name, value in values.items():
            setattr(self, name, value)

    def at(self, **kwargs: Any) -> Self:
        """Returns a shallow copy that differs only in the given parameters.

        The copy shares every other attribute (an open file, for example) with this instance,
        which is left unchanged.

        Args:
            **kwargs: New values of declared parameters.

        Raises:
            TypeError: A name is not a declared parameter, or a value has the wrong type.

        Returns:
            The copy.
        """
        view = copy.copy(self)
        view._set_params(kwargs)
        return view
