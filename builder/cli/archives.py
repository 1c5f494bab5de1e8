"""Verbs between the store and files: save (images to an archive), load (an archive's images
into the store), export (an image's flattened root filesystem)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import click

from builder.cli.common import open_store
from builder.errors import UsageError

STDOUT = "-"


def _target(output: str, what: str) -> Path | BinaryIO:
    """A path, or stdout for `-` (never a terminal: an archive there is only noise)."""
    if output != STDOUT:
        return Path(output)
    if sys.stdout.isatty():
        raise UsageError(f"-o -: would write {what} to a terminal; redirect stdout or give a file")
    return sys.stdout.buffer


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="The archive to write (- for stdout).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["oci", "docker"]),
    default="oci",
    show_default=True,
    help="oci: a tar of an OCI image layout (skopeo's oci-archive:); docker: what docker save"
    " writes (docker-archive:).",
)
@click.pass_context
def save(ctx: click.Context, names: tuple[str, ...], output: str, fmt: str) -> None:
    """Write images to an archive that docker load, podman load and skopeo read."""
    store = open_store(ctx)
    target = _target(output, "an archive")
    if fmt == "docker":
        from builder.store.docker_archive import save_docker_archive

        save_docker_archive(store, names, target)
    else:
        from builder.store.archive import save_oci_archive

        save_oci_archive(store, names, target)


@click.command()
@click.option(
    "-i",
    "--input",
    "source",
    default=STDOUT,
    help="The archive: an OCI archive or a docker archive, plain, gzip or zstd (default: stdin).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@click.pass_context
def load(ctx: click.Context, source: str, quiet: bool) -> None:
    """Load the images of an archive (from builder save, docker save, podman save, skopeo)."""
    from builder.store.load import load_archive

    if source == STDOUT:
        if sys.stdin.isatty():
            raise UsageError("no archive: give -i FILE or pipe one to stdin")
        path = Path("/dev/stdin")
    else:
        path = Path(source)
    for image in load_archive(open_store(ctx), path):
        if quiet:
            continue
        for name in image.names:
            click.echo(f"Loaded image: {name}")
        if not image.names:
            click.echo(f"Loaded image: {image.descriptor.digest}")


@click.command()
@click.argument("name")
@click.option(
    "-o",
    "--output",
    required=True,
    help="A tar file, a directory (an existing empty one, or a path ending in /), or - for stdout.",
)
@click.pass_context
def export(ctx: click.Context, name: str, output: str) -> None:
    """Write an image's root filesystem, its layers applied (whiteouts too), as a tar or a dir."""
    from builder.store.rootfs import export_rootfs_dir, write_rootfs_tar

    store = open_store(ctx)
    with store.lease():
        image = store.image(name)
        if output != STDOUT and (output.endswith("/") or Path(output).is_dir()):
            export_rootfs_dir(store, image, Path(output))
        else:
            write_rootfs_tar(store, image, _target(output, "a tar"))
