"""Recipes: text in, typed instructions and a stage graph out. Pure, no I/O of its own."""

from __future__ import annotations

from builder.recipe.dockerignore import DockerIgnore, ignore_file_for
from builder.recipe.expand import ExpansionError, expand_word, expand_words
from builder.recipe.instructions import Recipe
from builder.recipe.plan import BuildPlan, Stage, plan
from builder.recipe.resolve import resolve
from builder.recipe.scope import StageScope
from builder.recipe.typed import to_instructions

__all__ = [
    "BuildPlan",
    "DockerIgnore",
    "ExpansionError",
    "Recipe",
    "Stage",
    "StageScope",
    "expand_word",
    "expand_words",
    "ignore_file_for",
    "load",
    "plan",
    "resolve",
]


def load(text: str, filename: str = "Dockerfile") -> Recipe:
    """Parse and type a recipe. RecipeError on any syntax or instruction problem."""
    # Lazy: the grammar (lark) is only paid for by commands that read a recipe.
    from builder.recipe.syntax import parse_syntax

    tree = parse_syntax(text, filename)
    return Recipe(
        filename=tree.filename,
        escape=tree.directives.escape,
        instructions=to_instructions(tree),
        syntax=tree.directives.syntax,
        check=tree.directives.check,
    )
