"""Declarations of typed keyword parameters."""

from typing import Any

__all__ = ["Param"]


class Param:
    """Declares a keyword parameter of a :class:`~corelay.plugboard.Plugboard` subclass.

    Used as metadata of an annotated class attribute, for example
    ``data_key: Annotated[str | None, Param(str)]``.

    Args:
        dtype: The type (or tuple of types) a value must be an instance of.
        default: The value the parameter has when it is not given. ``None`` is always accepted
            when it is the default.
    """

    __slots__ = ("default", "dtype")

    def __init__(self, dtype: type | tuple[type, ...], default: Any = None) -> None:
        self.dtype = dtype
        self.default = default

    def check(self, owner: str, name: str, value: object) -> None:
        """Raises :class:`TypeError` if ``value`` is not acceptable for this parameter.

        Args:
            owner: The name of the class the parameter belongs to, for the message.
            name: The name of the parameter, for the message.
            value: The value to check.

        Raises:
            TypeError: ``value`` is not an instance of :attr:`dtype` (nor the ``None`` default).
        """
        if value is None and self.default is None:
            return
        if not isinstance(value, self.dtype):
            expected = (
                " or ".join(t.__name__ for t in self.dtype)
                if isinstance(self.dtype, tuple)
                else self.dtype.__name__
            )
            raise TypeError(
                f"{owner}.{name} must be {expected}, not {type(value).__name__} ({value!r})"
            )

    def __repr__(self) -> str:
        return f"Param({self.dtype!r}, default={self.default!r})"
