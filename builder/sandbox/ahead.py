"""One thing made ahead, by a thread, while the one handed out before is in use: the next
RUN step's network namespace (netns.py) or cgroup (cgroups.py), each of which cost
milliseconds on the step's path (more on a busy machine) and depends on nothing the step
brings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Ahead(Generic[T]):
    """Hands out things `make` returns, made by a thread of its own: `begin` starts making
    the next one, `take` waits for it (starting it first if nobody did). The caller begins
    once its step has started, while its own thread only waits: begun at the take, the
    making competed with the step's set-up for the GIL and the CPU (a take then cost 2 ms
    where making it on the path cost 0.9). One made and not taken when `close` comes is
    handed to `drop`. Stages that build at once take them in turn."""

    def __init__(self, make: Callable[[], T], drop: Callable[[T], object], name: str) -> None:
        self._make_one, self._drop, self._name = make, drop, name
        self._taking = threading.Lock()
        self._state = threading.Lock()  # _made, _error and _closed, between the threads
        self._thread: threading.Thread | None = None
        self._made: tuple[T] | None = None
        self._error: BaseException | None = None
        self._closed = False

    def take(self) -> T:
        """A thing nobody else has (the caller disposes of it)."""
        with self._taking:
            self.begin()
            if self._thread is None:  # closed: nothing is made ahead any more
                return self._make_one()
            self._thread.join()
            with self._state:
                made, error = self._made, self._error
                self._made = self._error = None
                self._thread = None
            if error is not None:
                raise error
            assert made is not None
            return made[0]

    def begin(self) -> None:
        """Start making the next one, unless it is being made (or made) already."""
        with self._state:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._make, name=self._name, daemon=True)
            self._thread.start()

    def _make(self) -> None:
        try:
            made = self._make_one()
        except BaseException as err:  # raised to the taker, on its thread
            with self._state:
                self._error = err
            return
        with self._state:
            if not self._closed:
                self._made = (made,)
                return
        self._drop(made)  # nobody will take it

    def close(self) -> None:
        """Drop the thing made ahead and not taken, now or (if it is still being made: a
        build's end does not wait for it) once it is. Idempotent."""
        with self._state:
            self._closed = True
            made, self._made = self._made, None
        if made is not None:
            self._drop(made[0])
