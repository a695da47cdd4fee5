# Type stubs for CPython's C signal module (only what this project uses): the functions that
# the signal module wraps, which take and return plain ints and handlers, with no enum conversion.

from collections.abc import Callable
from types import FrameType

Handler = Callable[[int, FrameType | None], object] | int | None

SIGINT: int

def default_int_handler(signalnum: int, frame: FrameType | None, /) -> object: ...
def getsignal(signalnum: int, /) -> Handler: ...
def signal(signalnum: int, handler: Handler, /) -> Handler: ...
