"""Peak memory of a block of a test, traced by tracemalloc."""

import tracemalloc
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Peak:
    """The most memory Python code allocated at once in a block, known once the block ends."""

    bytes: int = 0


@contextmanager
def traced_peak() -> Generator[Peak]:
    """Traces the block's allocations; the :class:`Peak` it yields holds their peak after it."""
    peak = Peak()
    tracemalloc.start()
    try:
        yield peak
        peak.bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
