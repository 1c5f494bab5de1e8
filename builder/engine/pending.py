"""A RUN's layer written while the next step runs (issue 9: the engine's work per step).

A RUN step's upper dir does not change once its sandbox has ended (and its unchanged dirs
are pruned), so it can be the next step's top lower dir at once, as it is. Its tar, diff ID
and blob are written by a worker thread meanwhile (engine/workers): 3-5 ms a step here, on the
build's critical path before. The state after the RUN carries the history entry already
(steps after it append theirs in order) but not the diff ID and blob, which only layer
steps append; `settle` joins the thread and appends them, then adopts the dir into
root/layers and records the step, in the order commit_layer keeps (blob, then the dir's
sync, then the record naming both: store/finishing).

Who settles: every step but a RUN before it does anything (engine: `_Run.step`), a RUN
after its sandbox has ended (while it ran, the dir was one of its lowers, so it is not
renamed under a mounted overlay) or before a cache hit, and a stage when it ends, also
when it fails: a step whose layer was made keeps its record. The image, its layers and
the records are the ones an unpipelined build writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from builder.engine import workers
from builder.engine.state import ImageState
from builder.errors import LayerError, SandboxError, StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.record import replace

Written = tuple[Descriptor, Digest]  # the blob, the diff ID


class PendingLayer:
    """`write()` run by a worker (engine/workers); `finish(layer, diff_id)` once it is joined."""

    def __init__(
        self,
        upper: Path,
        write: Callable[[], Written],
        finish: Callable[[Descriptor, Digest], None],
        discard: Callable[[], None],
        where: str = "",
    ) -> None:
        self.upper = upper  # the step's upper dir: a lower of the next step until settled
        self.where = where  # the RUN's "Dockerfile:LINE: RUN ...": its write's errors say it
        self._write = write
        self._finish = finish
        self._discard = discard
        self._written: Written | None = None
        self._error: BaseException | None = None
        self._once = threading.Lock()
        self._done = False  # finished or discarded
        self._job = workers.start(self._run)

    def _run(self) -> None:
        try:
            self._written = self._write()
        except BaseException as err:  # raised where the build settles it
            self._error = err

    def join(self) -> Written:
        """The blob and diff ID, once written; the dir adopted and the step recorded (once:
        a state and its copies share this). A failed write discards the dir and raises its
        error."""
        with self._once:
            self._job.join()
            if self._error is not None or self._written is None:
                if not self._done:
                    self._done = True
                    self._discard()
                raise (
                    located(self._error, self.where)
                    if self._error
                    else RuntimeError("layer writer ended without a result")
                )
            if not self._done:
                self._done = True
                self._finish(*self._written)
            return self._written


def located(err: BaseException, where: str) -> BaseException:
    """A store, layer or sandbox error of the write, naming the RUN whose layer it was
    (the engine names the step it ran in; this one was settled by a later step, or by the
    stage's end); marked so that the engine does not name the settling step too."""
    if not where or not isinstance(err, SandboxError | LayerError | StoreError):
        return err
    named = type(err)(f"{where}: {err}")
    setattr(named, "located", True)  # noqa: B010 (an error class of any kind may get it)
    named.__cause__ = err
    return named


def settle(state: ImageState) -> ImageState:
    """The state with its pending layer (if any) written and appended: diff ID and blob."""
    pending = state.pending
    if pending is None:
        return state
    layer, diff_id = pending.join()
    config = replace(state.config, diff_ids=(*state.config.diff_ids, diff_id))
    return replace(state, config=config, layers=(*state.layers, layer), pending=None)
