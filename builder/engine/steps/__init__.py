"""One handler per instruction. `execute()` dispatches on the instruction's type.

A handler's module is imported when its instruction first comes: a recipe without RUN
never loads the RUN machinery, nor one without COPY the copier (start-up is part of every
cached build).
"""

from __future__ import annotations

from builder.engine.pending import settle
from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext
from builder.errors import RecipeError
from builder.recipe import instructions as ins


def execute(instr: ins.Instruction, state: ImageState, ctx: StepContext) -> ImageState:
    if isinstance(instr, ins.Run):
        from builder.engine.steps.run import run_step

        return run_step(instr, state, ctx)
    # The layer steps below read and append layers: a RUN's before them, if still being
    # written (engine/pending), is settled first. Config-only steps leave it be.
    if isinstance(instr, ins.Copy | ins.Add):
        from builder.engine.steps.copy import copy_step

        return copy_step(instr, settle(state), ctx)
    if isinstance(instr, ins.Workdir):
        from builder.engine.steps.workdir import workdir_step

        return workdir_step(instr, settle(state), ctx)
    from builder.engine.steps.metadata import METADATA_HANDLERS, arg_step

    if isinstance(instr, ins.Arg):
        return arg_step(instr, state, ctx)
    handler = METADATA_HANDLERS.get(type(instr))
    if handler is None:
        raise RecipeError(f"{instr.keyword} cannot be used here", instr.location)
    return handler(instr, state, ctx)


__all__ = ["StepContext", "execute"]
