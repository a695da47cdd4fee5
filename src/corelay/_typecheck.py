"""Runtime enforcement of public signatures with beartype."""

from typing import Literal

from beartype import BeartypeConf, FrozenDict, beartype


class HintViolation(TypeError):  # noqa: N818 - reads as "a hint violation", like beartype's own
    """A call or return value violated a public signature's type hints.

    A :class:`TypeError`, as the reference promises for wrongly typed arguments.
    """


#: Decorator for public classes and functions: checks arguments and return values at call time.
#: A storage mode (``Literal['r', 'w', 'a']``) is checked as a str here: the storages check the
#: value themselves, so that an unknown mode is the documented ValueError, while type checkers
#: hold callers to the three literals.
typechecked = beartype(
    conf=BeartypeConf(
        violation_type=HintViolation,
        hint_overrides=FrozenDict({Literal["r", "w", "a"]: str}),
    )
)
