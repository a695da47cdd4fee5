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

import functools
import inspect
import types
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from corelay._typecheck import typechecked
from corelay.io.errors import CacheWarning, NoDataSource, NoDataTarget
from corelay.io.hashing import ext_hash, function_hash
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
    ``data_in``, a tuple; ``meta`` is ``{"function": "<module>.<qualname>", "code": <hash>,
    "kwargs": {...}}`` with the keyword-only parameters (and ``**kwargs``) in the dict. The call
    returns ``io.read(data_in, meta)`` if that succeeds; on :class:`NoDataSource` it calls the
    function and stores the result with ``io.write(result, data_in, meta)``.

    The ``"code"`` hash is what tells functions of the same name apart, so that a cached result
    is never another function's. For a Python function (``def`` or ``lambda``) it is
    :func:`~corelay.io.hashing.function_hash`: its code, defaults, and the current values of
    the variables it closes over, recomputed at every call (a closure variable may be rebound).
    ``make(2)`` and ``make(3)`` of ``def make(k): return lambda a: a + k`` are two cache keys,
    and so are two lambdas with other code; editing a function's body makes new keys too (as
    does another Python version, whose bytecode differs). The values of the global names a
    function uses are not part of the key. For any other callable (a ``functools.partial``, an
    object with ``__call__``, a built-in) it is :func:`~corelay.io.hashing.ext_hash` of the
    callable itself. A closed-over object is keyed by its value: one that records state (a call
    counter, say) makes a new key whenever that state changes.

    Nothing computed is lost: a storage that cannot be written (:class:`NoDataTarget`: a
    :class:`~corelay.io.storage.NoStorage`, a file opened read-only) returns the result without
    storing it, silently; any other failure to store it (a result the storage cannot hold, a
    full disk, a closed file) returns it with a :class:`~corelay.io.errors.CacheWarning` that
    names the reason.

    With :class:`~corelay.io.storage.HashedHDF5`, a result may be any stored tree (arrays,
    scalars, str, bytes, None, dicts with str keys, tuples and lists of them); the arguments
    must be values :func:`~corelay.io.hashing.ext_hash` accepts, the keyword-only ones stored
    trees (they are the metadata HashedHDF5 stores).

    Args:
        io: Where the results are stored, typically a
            :class:`~corelay.io.storage.HashedHDF5`. Any object with ``read(data_in, meta)``
            and ``write(data_out, data_in, meta)`` works; it must tell inputs apart (a keyed
            storage such as ``HDF5Storage`` would return one stored value for every input).

    Returns:
        The decorator. The decorated function keeps its signature (for type checkers too),
        name and docstring. The decorator raises ``TypeError`` for a function it cannot key
        (a default or closed-over value, or the callable itself, that ``ext_hash`` refuses),
        naming the value.
    """

    def decorator(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)
        qualname = getattr(function, "__qualname__", type(function).__qualname__)
        module = getattr(function, "__module__", None) or type(function).__module__
        name = f"{module}.{qualname}"
        try:
            _code_hash(function)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"memoize: {name} cannot be cached: its results could not be told apart from "
                f"those of another function of that name ({error})"
            ) from error

        @functools.wraps(function)
        def memoized(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            data_in = bound.args
            meta: dict[str, Any] = {
                "function": name,
                "code": _code_hash(function),
                "kwargs": dict(bound.kwargs),
            }
            try:
                return cast(R, io.read(data_in, meta))
            except NoDataSource:
                pass
            result = function(*args, **kwargs)
            try:
                io.write(result, data_in, meta)
            except NoDataTarget:
                pass  # nowhere to store it, by the caller's choice: the result is still right
            except Exception as error:
                warnings.warn(
                    f"memoize: the result of {name} was returned but not cached: "
                    f"{type(error).__name__}: {error}",
                    CacheWarning,
                    stacklevel=2,
                )
            return result

        return memoized

    return decorator


def _code_hash(function: object) -> str:
    """The hash that tells ``function`` apart from other callables of the same name."""
    if type(function) is types.FunctionType:
        return function_hash(function)
    return ext_hash(function)
