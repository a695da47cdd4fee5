"""Ctrl-C held back during a write: raised once the write is done, a user's handler left alone."""

import signal
import threading
from types import FrameType

import pytest

from corelay.io._hdf5 import interrupts_deferred


def test_an_interrupt_inside_the_block_is_raised_when_it_ends() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    reached_end = False
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        reached_end = True  # not raised at the signal
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_block_without_an_interrupt_restores_the_default_handler() -> None:
    with interrupts_deferred():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_blocks_own_exception_goes_through() -> None:
    with pytest.raises(OSError, match="disk full"), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        raise OSError("disk full")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_blocks_raise_once_at_the_outer_end() -> None:
    inner_done = False
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
        inner_done = True  # the inner block held nothing of its own
    assert inner_done
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_users_handler_runs_at_once_and_stays() -> None:
    calls: list[int] = []

    def mine(number: int, frame: FrameType | None) -> None:
        calls.append(number)

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with interrupts_deferred():
            assert signal.getsignal(signal.SIGINT) is mine
            signal.raise_signal(signal.SIGINT)
            assert calls == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_nothing_changes() -> None:
    seen: list[object] = []

    def run() -> None:
        with interrupts_deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]
