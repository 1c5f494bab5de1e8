"""sandbox/ahead: things made by a thread while the step before runs, handed out in turn."""

from __future__ import annotations

import threading

import pytest

from builder.sandbox.ahead import Ahead


class _Maker:
    def __init__(self) -> None:
        self.made: list[tuple[int, str]] = []  # (serial, the thread that made it)
        self.dropped: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def make(self) -> int:
        self.gate.wait(10)
        serial = len(self.made)
        self.made.append((serial, threading.current_thread().name))
        return serial


def test_begin_makes_the_next_one_ahead_and_take_hands_it_out() -> None:
    maker = _Maker()
    ahead = Ahead(maker.make, maker.dropped.append, "test-ahead")
    assert ahead.take() == 0  # nothing begun: made now (by the thread), waited for
    assert len(maker.made) == 1  # a take begins nothing after it
    ahead.begin()
    ahead.begin()  # once: it is being made already
    assert ahead.take() == 1
    assert [name for _, name in maker.made] == ["test-ahead", "test-ahead"]
    ahead.close()
    assert maker.dropped == []


def test_one_made_and_not_taken_is_dropped_at_close_even_if_still_being_made() -> None:
    maker = _Maker()
    ahead = Ahead(maker.make, maker.dropped.append, "test-ahead")
    ahead.begin()
    ahead.take()
    maker.gate.clear()
    ahead.begin()  # the maker waits at the gate
    ahead.close()  # does not wait for it
    assert maker.dropped == []
    maker.gate.set()
    for _ in range(1000):
        if maker.dropped:
            break
        threading.Event().wait(0.01)
    assert maker.dropped == [1]
    ahead.close()  # idempotent
    assert maker.dropped == [1]


def test_a_failure_to_make_one_is_raised_to_the_taker() -> None:
    def fail() -> int:
        raise OSError(28, "No space left on device")

    ahead = Ahead(fail, lambda _x: None, "test-ahead")
    ahead.begin()
    with pytest.raises(OSError, match="No space left"):
        ahead.take()
    with pytest.raises(OSError, match="No space left"):  # and again: not stuck
        ahead.take()
