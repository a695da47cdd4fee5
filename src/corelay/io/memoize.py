"""Caching a function's results in a storage: the :func:`memoize` decorator.

Example:
    >>> import h5py, numpy
    >>> from corelay.io.storage import HashedHDF5
    >>> from corelay.io.memoize import memoize
    >>> cache = HashedHDF5(h5py.File("cache.h5", "a").require_group("spectra"))
    >>> @memoize(cache)
    ... def spectrum(signal: numpy.ndarray, *, window: int = 8) -> numpy.ndarray:
    ...     return numpy.abs(numpy.fft.rfft(signal, n=window))

The first call with an input computes and stores the result; later calls with equal arguments
(in this or another process) read it back.
"""

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from corelay._typecheck import typechecked
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.storage import Storable

__all__ = ["memoize"]

P = ParamSpec("P")
R = TypeVar("R")


@typechecked
def memoize(io: Storable) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Returns a decorator that caches a function's results in ``io``.

    A call of the decorated function first binds its arguments to the function's signature,
    with the defaults applied, so that ``f(1)``, ``f(1, 2)`` and ``f(a=1, b=2)`` are the same
    call when ``b`` defaults to ``2``. The positional parameters (and ``*args``) form
    ``data_in``, a tuple; ``meta`` is ``{"function": "<module>.<qualname>", "kwargs": {...}}``
    with the keyword-only parameters (and ``**kwargs``) in the dict. The call returns
    ``io.read(data_in, meta)`` if that succeeds; on :class:`NoDataSource` it calls the function
    and stores the result with ``io.write(result, data_in, meta)``. A storage that cannot be
    written (:class:`NoDataTarget`: a :class:`~corelay.io.storage.NoStorage`, a file opened
    read-only) is not an error: the result is returned without being stored.

    The cache key is the function's qualified name and its arguments, not its code: after
    changing what a function computes, use a new storage (or group), or rename the function.
    With :class:`~corelay.io.storage.HashedHDF5`, the function must return an array or a tuple
    of arrays; the arguments must be values :func:`~corelay.io.hashing.ext_hash` accepts
    (arrays, scalars, str, bytes, containers of them), the keyword-only ones stored trees.

    Args:
        io: Where the results are stored, typically a
            :class:`~corelay.io.storage.HashedHDF5`. Any object with ``read(data_in, meta)``
            and ``write(data_out, data_in, meta)`` works; it must tell inputs apart (a keyed
            storage such as ``HDF5Storage`` would return one stored value for every input).

    Returns:
        The decorator. The decorated function keeps its signature (for type checkers too),
        name and docstring.
    """

    def decorator(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)
        name = f"{function.__module__}.{function.__qualname__}"

        @functools.wraps(function)
        def memoized(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            data_in = bound.args
            meta: dict[str, Any] = {"function": name, "kwargs": dict(bound.kwargs)}
            try:
                return cast(R, io.read(data_in, meta))
            except NoDataSource:
                pass
            result = function(*args, **kwargs)
            # Nowhere to store it: the result is still right.
            with contextlib.suppress(NoDataTarget):
                io.write(result, data_in, meta)
            return result

        return memoized

    return decorator
