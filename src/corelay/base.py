"""Parameters: the slots that configure processors and storages."""

from typing import TypeVar

from corelay.plugboard import Slot

__all__ = ["Param"]

T = TypeVar("T")


class Param(Slot[T]):
    """A parameter of a :class:`~corelay.plugboard.Plugboard` subclass (a processor, a storage).

    Declared as ``name: Annotated[T, Param(T, default)]``. Besides being a
    :class:`~corelay.plugboard.Slot`, a parameter says how a processor takes and uses it.

    Args:
        dtype: The type, or tuple of types, a value must be an instance of.
        default: The value when none is given; ``None`` if there is none.
        mandatory: Drop ``default``: the parameter must be given.
        positional: A processor's constructor takes it as a positional argument too (in
            declaration order among the positional parameters).
        identifier: It identifies what a processor computes: it is part of the metadata its
            cached outputs are keyed by.

    Raises:
        TypeError: ``dtype`` is not a type or a tuple of types, or ``default`` is not one of them.
    """

    def __init__(
        self,
        dtype: type[T] | tuple[type[T], ...],
        default: T | None = None,
        mandatory: bool = False,
        positional: bool = False,
        identifier: bool = False,
    ) -> None:
        super().__init__(dtype, None if mandatory else default)
        self._mandatory = mandatory
        self._positional = positional
        self._identifier = identifier

    @property
    def is_mandatory(self) -> bool:
        """Whether the parameter was declared mandatory (its default dropped)."""
        return self._mandatory

    @property
    def is_positional(self) -> bool:
        """Whether a processor's constructor takes the parameter as a positional argument."""
        return self._positional

    @property
    def is_identifier(self) -> bool:
        """Whether the parameter identifies what a processor computes (it keys cached outputs)."""
        return self._identifier
