"""WORKDIR: the config's working directory, and the directory itself.

BuildKit creates the directory (owned by the current USER) when it is missing, so an
image whose last step is `WORKDIR /data` has /data. The mkdir runs in the sandbox, inside
the image's root. As docker's (20.10, checked against the live daemon), every WORKDIR but
`/` makes a layer, the empty one when the directory was there (even through a symlink),
and `WORKDIR /` none (an empty_layer history entry). When the layers show the directory
already (layer/merged, read on the host) no sandbox is started: the empty layer is written
from an empty upper dir.

Until this store's records said so, an existing directory made no layer: those records
are kept apart (`RECORDS`), so a cached build never gives what a --no-cache one does not.
"""

from __future__ import annotations

import functools
import os
import posixpath

from builder.engine import cachekey
from builder.engine.copier import Ownership, in_image, in_root
from builder.engine.executor import OverlayRoot
from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext, shown
from builder.engine.steps.layer_step import (
    cached_layer,
    commit_empty,
    commit_layer,
    execute_in_overlay,
    lowers_for,
    overlay_for,
)
from builder.errors import StepFailed
from builder.layer.merged import is_dir_in
from builder.recipe import instructions as ins
from builder.recipe.resolve import resolve
from builder.record import replace

# WORKDIR's records: made since an existing directory gets docker's empty layer.
RECORDS = "layer"


@in_root
def make_workdir(root: str, path: str, owner: Ownership) -> int:
    uid, gid = owner.resolve(root)
    missing = []
    current = path
    while current != "/" and not os.path.isdir(in_image(root, current)):
        missing.append(in_image(root, current))
        current = posixpath.dirname(current)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        os.chown(directory, uid, gid)
    return 0


def workdir_step(instr: ins.Workdir, state: ImageState, ctx: StepContext) -> ImageState:
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Workdir)
    current = state.config.config.working_dir or "/"
    path = posixpath.normpath(posixpath.join(current, resolved.path))
    user = state.config.config.user or ""
    created_by = f"WORKDIR {path}"
    if path != "/":  # BuildKit makes no dir for /, so looks no USER up
        Ownership(user or None).check_base(state, shown(instr), instr.location)
    key = cachekey.chain(state.key, "WORKDIR", [path, user])
    after = cached_layer(state, ctx, key, created_by, RECORDS)
    if after is None and path == "/":  # BuildKit makes nothing for /, not even a layer
        after = commit_empty(state, ctx, key, created_by, RECORDS)
    if after is None and is_dir_in(lowers_for(state, ctx), path):
        # There already (the usual case): the mkdir would change nothing, so no sandbox.
        from builder.sandbox.mounts import adopt_root_attrs

        root = overlay_for(state, ctx)
        # As the sandbox's mount would: the layer dir, a later step's top lower, must not
        # give the image's `/` a temp dir's 0700.
        adopt_root_attrs(str(root.upper), str(root.lowers[-1]) if root.lowers else None)
        after = commit_layer(state, ctx, key, created_by, root, meaning=RECORDS)
    if after is None:

        def launch(root: OverlayRoot, output: int) -> int:
            mkdir = functools.partial(make_workdir, path=path, owner=Ownership(user or None))
            return ctx.executor.call(root, "WORKDIR", mkdir, output)

        status, root, failure = execute_in_overlay(state, ctx, launch)
        if status != 0:
            raise StepFailed(f"{shown(instr)}: {failure or 'failed'}", status, instr.location)
        after = commit_layer(state, ctx, key, created_by, root, meaning=RECORDS)
    cc = replace(after.config.config, working_dir=path)
    return replace(after, config=after.config.with_container_config(cc))
