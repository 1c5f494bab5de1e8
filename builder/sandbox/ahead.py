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
    """Hands out things `make` returns, each made ahead by a thread of its own; one made
    and not taken when `close` comes is handed to `drop`. Stages that build at once take
    them in turn."""

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
            if self._thread is None:
                self._begin()
            assert self._thread is not None
            self._thread.join()
            with self._state:
                made, error = self._made, self._error
                self._made = self._error = None
            self._begin()
            if error is not None:
                raise error
            assert made is not None
            return made[0]

    def _begin(self) -> None:
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
