"""Verbs on recipes without building: parse (the syntax tree) and lint (the typed checks)."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _read(path: Path) -> str:
    # The same reader as build: a regular file, at most the recipe size limit, UTF-8.
    from builder.engine.recipefile import read_recipe_text

    return read_recipe_text(path)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="A JSON array, one object per instruction (the official parser's keys).",
)
def parse(file: Path, as_json: bool) -> None:
    """Print a recipe's syntax tree."""
    from builder.recipe.syntax import dump, parse_syntax, to_json

    tree = parse_syntax(_read(file), filename=file.name)
    if as_json:
        click.echo(json.dumps(to_json(tree), indent=2, ensure_ascii=False))
    else:
        click.echo(dump(tree), nl=False)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--build-arg", "build_args", multiple=True, help="KEY=VALUE, as for build.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_context
def lint(ctx: click.Context, file: Path, build_args: tuple[str, ...], fmt: str) -> None:
    """Check a recipe without building it: errors exit 3 with the message `build` would
    give, warnings alone exit 0."""
    from builder.cli.build import parse_build_args
    from builder.errors import RecipeError
    from builder.recipe import load
    from builder.recipe.lint import lint as run_lint

    recipe = load(_read(file), filename=file.name)
    findings = run_lint(recipe, parse_build_args(build_args))
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "severity": f.severity,
                        "rule": f.rule,
                        "message": f.message,
                        "file": f.location.filename,
                        "line": f.location.line,
                        "column": f.location.column,
                    }
                    for f in findings
                ],
                indent=2,
            )
        )
    else:
        for f in findings:
            loc = f.location
            if f.error is not None:  # word for word what `builder build` says
                click.echo(f"error: {f.error.render()}", err=True)
                continue
            click.echo(
                f"{loc.filename}:{loc.line}:{loc.column}: {f.severity}: {f.message} [{f.rule}]",
                err=True,
            )
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        ctx.exit(RecipeError.exit_code)
