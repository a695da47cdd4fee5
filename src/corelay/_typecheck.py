"""Runtime enforcement of public signatures with beartype."""

from beartype import BeartypeConf, beartype


class HintViolation(TypeError):  # noqa: N818 - reads as "a hint violation", like beartype's own
    """A call or return value violated a public signature's type hints.

    A :class:`TypeError`, as the reference promises for wrongly typed arguments.
    """


#: Decorator for public classes and functions: checks arguments and return values at call time.
typechecked = beartype(conf=BeartypeConf(violation_type=HintViolation))
