"""What RUN and COPY share: a cache lookup, work on an overlay root, the upper dir as a layer."""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Callable, Iterator
from pathlib import Path

from builder.engine import cachekey, workers
from builder.engine.events import StepOutput
from builder.engine.executor import OverlayRoot
from builder.engine.pending import PendingLayer, settle
from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext, history, now
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.layer.prune import prune_unchanged_dirs
from builder.record import replace
from builder.store import StepRecord


def record_key(ctx: StepContext, key: str, meaning: str = "") -> str:
    """Where a layer step's result is cached. Under SOURCE_DATE_EPOCH the blob has clamped
    mtimes and `created` is the epoch, so a result made without it (or under another epoch)
    must not be reused: each epoch gets records of its own. The step's key, which later
    steps chain on, stays as it is, so builds without an epoch keep their keys.
    `meaning`: a step whose result changed meaning (WORKDIR's layer) keeps its records
    apart from the old ones, which a store may still hold, without changing any key."""
    if meaning:
        key = cachekey.chain(key, "RECORD", meaning)
    if ctx.source_date_epoch is None:
        return key
    return cachekey.chain(key, "SOURCE_DATE_EPOCH", ctx.source_date_epoch)


def cached_layer(
    state: ImageState, ctx: StepContext, key: str, created_by: str, meaning: str = ""
) -> ImageState | None:
    """The state after this step if a cache holds it: the local one (with its blob still
    there), or an imported one, whose blob is fetched only when it is needed. `meaning`:
    see record_key."""
    if ctx.no_cache:
        return None
    rkey = record_key(ctx, key, meaning)
    record = ctx.cache.lookup(rkey)
    if record is None:
        if ctx.probe:  # the keys only: whether the result is made is decided later
            config = state.config.with_history(history(state.created, created_by, empty_layer=True))
            return replace(state.step(config, key, cached=False), unresolved=True)
        return None
    ctx.cache.note(rkey, record)
    state = settle(state)  # a RUN's layer before it, if still being written
    created = record.created
    layer, diff_id = record.layer, record.diff_id
    if layer is None or diff_id is None:  # a step that makes no layer (commit_empty)
        config = state.config.with_history(history(created, created_by, empty_layer=True))
        return state.step(config, key, created=created, cached=True)
    config = state.config.with_layer(diff_id, history(created, created_by, empty_layer=False))
    return state.step(config, key, created=created, layer=layer, cached=True)


def _unpacked(layer: Descriptor, diff_id: Digest, ctx: StepContext) -> Path:
    path = ctx.store.layers.trusted(diff_id)
    if path is not None:
        return path
    ctx.cache.need(layer)  # unpacked from its blob, which may be remote
    return ctx.store.layers.get(layer, diff_id)


def lowers_for(state: ImageState, ctx: StepContext) -> tuple[Path, ...]:
    """The state's unpacked layer dirs, bottom first; a RUN's layer still being written
    (engine/pending) is its upper dir, on top."""
    lowers = tuple(
        _unpacked(layer, diff_id, ctx)
        for layer, diff_id in zip(state.layers, state.config.diff_ids, strict=True)
    )
    return lowers if state.pending is None else (*lowers, state.pending.upper)


def overlay_for(state: ImageState, ctx: StepContext) -> OverlayRoot:
    lowers = lowers_for(state, ctx)
    # volatile: no sync of the store's file system when the step's overlay is unmounted;
    # commit_layer has the layer synced behind the next steps, before its cache record.
    return OverlayRoot(
        lowers=lowers,
        upper=ctx.store.tmp_dir("upper"),
        work=ctx.store.tmp_dir("work"),
        volatile=True,
        skeleton=ctx.store.paths.skeleton,
    )


def discard(root: OverlayRoot, ctx: StepContext) -> None:
    """The overlay's scratch dirs go in the background (an adopted upper is gone already)."""
    for path in (root.upper, root.work):
        ctx.store.scratch.discard(path)


def commit_empty(
    state: ImageState, ctx: StepContext, key: str, created_by: str, meaning: str = ""
) -> ImageState:
    """Record a step that makes no layer (WORKDIR /): an empty_layer history entry. The
    record names no blob, but goes through the finisher all the same: its write and fsync
    are off the build's path, and the finisher keeps the records in step order."""
    created = now(ctx.source_date_epoch)
    empty = StepRecord(created)
    rkey = record_key(ctx, key, meaning)
    ctx.store.finishing.submit(lambda: ctx.store.cache.put(rkey, empty))
    ctx.cache.note(rkey, empty)
    config = state.config.with_history(history(created, created_by, empty_layer=True))
    return state.step(config, key, created=created, cached=False)


def commit_layer(
    state: ImageState,
    ctx: StepContext,
    key: str,
    created_by: str,
    root: OverlayRoot,
    *,
    previous: Descriptor | None = None,
    keep_frames: bool = False,
    meaning: str = "",
) -> ImageState:
    """Turn the upper dir into a layer blob, adopt it as the unpacked layer, record the key.

    RUN, COPY and WORKDIR always make a layer, as docker's do, an empty one when nothing
    changed. `previous` and `keep_frames`: see Store.put_layer (COPY's incremental layers).
    The blob's fsync and the records naming it finish in the background (Store.finish
    waits). `meaning`: see record_key.
    """
    created = now(ctx.source_date_epoch)
    try:
        prune_unchanged_dirs(root.upper, root.lowers)
        layer, diff_id = ctx.store.put_layer(
            root.upper,
            ctx.compression.kind,
            mtime_clamp=ctx.source_date_epoch,
            level=ctx.compression.level,
            previous=previous,
            keep_frames=keep_frames,
            background=True,
        )
        ctx.store.layers.adopt(diff_id, root.upper, background=ctx.store.finishing)
    finally:
        discard(root, ctx)
    record = StepRecord(created, layer, diff_id)
    # The blob and the unpacked dir are made durable behind the next steps (store/finishing:
    # the blob's commit, then adopt's sync), the record that names them after them.
    rkey = record_key(ctx, key, meaning)
    ctx.store.finishing.submit(lambda: ctx.store.cache.put(rkey, record))
    ctx.cache.note(rkey, record)
    config = state.config.with_layer(diff_id, history(created, created_by, empty_layer=False))
    return state.step(config, key, created=created, layer=layer, cached=False)


def commit_layer_behind(
    state: ImageState,
    ctx: StepContext,
    key: str,
    created_by: str,
    root: OverlayRoot,
    where: str = "",
    *,
    previous: Descriptor | None = None,
    keep_frames: bool = False,
    then: Callable[[], object] | None = None,
) -> ImageState:
    """commit_layer for a RUN or a COPY, its layer written while the next step runs
    (engine/pending): the same blob, diff ID, unpacked dir and record, in the same order,
    once settled. `previous`, `keep_frames`: see commit_layer; `then` goes to the
    finisher after the step's record (COPY's lineage, which names it)."""
    created = now(ctx.source_date_epoch)
    try:
        # Before the dir is anyone's lower; and before the layer below is settled, whose
        # dir (one of root.lowers) it renames.
        prune_unchanged_dirs(root.upper, root.lowers)
        state = settle(state)
    except BaseException:
        discard(root, ctx)
        raise
    ctx.store.scratch.discard(root.work)
    upper, rkey = root.upper, record_key(ctx, key)

    def write() -> tuple[Descriptor, Digest]:
        return ctx.store.put_layer(
            upper,
            ctx.compression.kind,
            mtime_clamp=ctx.source_date_epoch,
            level=ctx.compression.level,
            previous=previous,
            keep_frames=keep_frames,
            background=True,
        )

    def finish(layer: Descriptor, diff_id: Digest) -> None:
        try:
            ctx.store.layers.adopt(diff_id, upper, background=ctx.store.finishing)
        finally:
            ctx.store.scratch.discard(upper)  # (gone already once adopted)
        record = StepRecord(created, layer, diff_id)
        ctx.store.finishing.submit(lambda: ctx.store.cache.put(rkey, record))
        if then is not None:
            ctx.store.finishing.submit(then)
        ctx.cache.note(rkey, record)

    pending = PendingLayer(
        upper, write, finish, lambda: ctx.store.scratch.discard(upper), where=where
    )
    entry = history(created, created_by, empty_layer=False)
    config = replace(state.config, history=(*state.config.history, entry))
    return replace(state.step(config, key, created=created, cached=False), pending=pending)


class OutputPump:
    """A pipe for a step's stdout+stderr whose lines become StepOutput events.

    `fd` is the write end for the sandbox; `finish()` closes it once the work has ended and
    waits for the last line. The last line is kept: a failed step's error message quotes it.

    The end is not the pipe's EOF: a sandbox another stage forked meanwhile (stages build at
    once) holds a copy of the write end until it ends. Once the work has ended everything
    it wrote is in the pipe, so `finish()` has the reader take what is there, then stop.
    """

    def __init__(self, ctx: StepContext) -> None:
        read_fd, self.fd = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        self.last_line = ""
        number, report = ctx.number, ctx.report

        def emit(raw: bytes) -> None:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.strip():
                self.last_line = line.strip()
            report(StepOutput(number, line))

        def reader() -> None:
            pending = b""
            try:
                for chunk in self._chunks(read_fd):
                    *lines, pending = (pending + chunk).split(b"\n")
                    for raw in lines:
                        emit(raw)
                if pending:
                    emit(pending)
            finally:
                os.close(read_fd)

        self._job = workers.start(reader)  # a kept thread: no start to wait for

    def _chunks(self, read_fd: int) -> Iterator[bytes]:
        """What the pipe gives until EOF, or until `finish()` and the pipe is empty."""
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:  # the work has ended: drain, without waiting
                os.set_blocking(read_fd, False)
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(read_fd, 65536):
                        yield chunk
                return
            chunk = os.read(read_fd, 65536)
            if not chunk:
                return
            yield chunk

    def finish(self) -> None:
        os.close(self.fd)
        os.write(self._wake_w, b"x")  # (the reader may have seen EOF already)
        os.close(self._wake_w)
        self._job.join()
        os.close(self._wake_r)


def execute_in_overlay(
    state: ImageState, ctx: StepContext, launch: Callable[[OverlayRoot, int], int]
) -> tuple[int, OverlayRoot, str]:
    """Run `launch(root, output_fd)` on a fresh overlay of the state's layers.

    Returns the exit status, the overlay and the last line of output. A failed step's
    overlay is already discarded; a successful one's upper dir is ready for `commit_layer`.
    """
    root = overlay_for(state, ctx)
    pump = OutputPump(ctx)
    try:
        status = launch(root, pump.fd)
    except BaseException:
        discard(root, ctx)
        raise
    finally:
        pump.finish()
    if status != 0:
        discard(root, ctx)
    return status, root, pump.last_line
