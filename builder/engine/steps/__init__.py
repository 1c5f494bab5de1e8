"""One handler per instruction. `execute()` dispatches on the instruction's type."""

from __future__ import annotations

from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext
from builder.engine.steps.copy import copy_step
from builder.engine.steps.metadata import METADATA_HANDLERS, arg_step
from builder.engine.steps.run import run_step
from builder.engine.steps.workdir import workdir_step
from builder.errors import RecipeError
from builder.recipe import instructions as ins


def execute(instr: ins.Instruction, state: ImageState, ctx: StepContext) -> ImageState:
    if isinstance(instr, ins.Run):
        return run_step(instr, state, ctx)
    if isinstance(instr, ins.Copy | ins.Add):
        return copy_step(instr, state, ctx)
    if isinstance(instr, ins.Workdir):
        return workdir_step(instr, state, ctx)
    if isinstance(instr, ins.Arg):
        return arg_step(instr, state, ctx)
    handler = METADATA_HANDLERS.get(type(instr))
    if handler is None:
        raise RecipeError(f"{instr.keyword} cannot be used here", instr.location)
    return handler(instr, state, ctx)


__all__ = ["StepContext", "execute"]
