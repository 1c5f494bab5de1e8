"""`builder build`: docker build's flags, over builder.engine.engine."""

from __future__ import annotations

from pathlib import Path

import click

from builder.cli import epoch
from builder.cli.common import open_store
from builder.errors import UsageError


def parse_build_args(values: tuple[str, ...]) -> dict[str, str]:
    """`--build-arg K=V`; a bare `--build-arg K` takes K from our environment, as docker does."""
    import os

    args: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not key:
            raise UsageError(f"--build-arg {value!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            val = os.environ[key]
        args[key] = val
    return args


def parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not key or not sep:
            raise UsageError(f"--label {value!r}: expected KEY=VALUE")
        labels[key] = val
    return labels


def parse_secrets(values: tuple[str, ...], staging: Path) -> dict[str, Path]:
    """`--secret id=ID,src=FILE` or `id=ID,env=VAR` (docker build's syntax). A secret from
    the environment is written to a private file in STAGING for the build's duration."""
    import os

    secrets: dict[str, Path] = {}
    for value in values:
        fields = dict(part.partition("=")[::2] for part in value.split(","))
        ident = fields.get("id", "")
        source = fields.get("src") or fields.get("source")
        env = fields.get("env")
        if not ident:
            raise UsageError(f"--secret {value!r}: expected id=ID,src=FILE or id=ID,env=VAR")
        if source is None and env is None:
            env = ident  # docker: a bare id names an environment variable
        if source is not None:
            path = Path(source).expanduser()
            if not path.is_file():
                raise UsageError(f"--secret id={ident}: {source} is not a file")
            secrets[ident] = path
        elif env is not None:
            if env not in os.environ:
                raise UsageError(f"--secret id={ident}: ${env} is not set")
            path = staging / f"env-{len(secrets)}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(os.environ[env])
            secrets[ident] = path
    return secrets


@click.command()
@click.argument("context", type=click.Path(path_type=Path), default=".")
@click.option("-t", "--tag", "tags", multiple=True, help="Name the image NAME[:TAG] (repeatable).")
@click.option(
    "-f",
    "--file",
    "recipe",
    type=click.Path(path_type=Path),
    help="The recipe (default: CONTEXT/Dockerfile or CONTEXT/Containerfile).",
)
@click.option("--build-arg", "build_args", multiple=True, help="Set a build arg: KEY=VALUE.")
@click.option("--target", help="Build this stage (by name) and what it needs.")
@click.option("--no-cache", is_flag=True, help="Run every step; reuse nothing.")
@click.option(
    "--progress",
    type=click.Choice(["auto", "plain", "tty", "json", "quiet"]),
    default="auto",
    show_default=True,
    help="How to show progress (on stderr).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress; print the image ID on stdout.")
@click.option("--iidfile", type=click.Path(path_type=Path), help="Write the image ID here.")
@click.option(
    "--network",
    type=click.Choice(["none", "host", "default"]),
    default="default",
    show_default=True,
    help="RUN's network: default is an isolated namespace (loopback only), like none.",
)
@click.option("--label", "labels", multiple=True, help="Set a label on the image: KEY=VALUE.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    help="A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR.",
)
@click.option(
    "--compression",
    type=click.Choice(["zstd", "gzip"]),
    default="zstd",
    show_default=True,
    help="Layer compression.",
)
@click.option(
    "--pull", is_flag=True, help="Ask the registry for every base image, even one in the store."
)
@click.option("--push", is_flag=True, help="Push every -t name after the build.")
@epoch.option
@click.pass_context
def build(
    ctx: click.Context,
    context: Path,
    tags: tuple[str, ...],
    recipe: Path | None,
    build_args: tuple[str, ...],
    target: str | None,
    no_cache: bool,
    progress: str,
    quiet: bool,
    iidfile: Path | None,
    network: str,
    labels: tuple[str, ...],
    secrets: tuple[str, ...],
    compression: str,
    pull: bool,
    push: bool,
    source_date_epoch: str | None,
) -> None:
    """Build an image from a recipe and a build CONTEXT directory."""
    import tempfile

    from builder.cli.progress import renderer
    from builder.cli.registry import puller, push_image
    from builder.engine.engine import build as run_build
    from builder.engine.options import BuildOptions
    from builder.image.reference import Reference

    names = tuple(str(Reference.parse(tag)) for tag in tags)
    if push and not names:
        raise UsageError("--push needs a name to push: give -t NAME")
    sde = epoch.source_date_epoch(source_date_epoch)
    with tempfile.TemporaryDirectory(prefix="builder-secrets-") as staging:
        options = BuildOptions(
            context=context,
            recipe=recipe,
            tags=names,
            build_args=parse_build_args(build_args),
            target=target,
            no_cache=no_cache,
            compression=compression,
            network="host" if network == "host" else "none",
            secrets=parse_secrets(secrets, Path(staging)),
            labels=parse_labels(labels),
            source_date_epoch=sde,
            pull=pull,
        )
        store = open_store(ctx)
        report = renderer("quiet" if quiet else progress)
        result = run_build(options, store, report, puller=puller(store, report))
    if iidfile is not None:
        iidfile.write_text(result.image_id)
    for name in names if push else ():
        push_image(store, name, None, report)
    if quiet:
        click.echo(result.image_id)
