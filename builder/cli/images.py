"""Verbs on the images in the store: import, images, inspect, rmi, tag (save, load,
export: archives.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from builder.cli import compress, epoch
from builder.cli.common import open_store


@click.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("name")
@click.option(
    "-c",
    "--change",
    "changes",
    multiple=True,
    metavar="INSTRUCTION",
    help="Apply a Dockerfile instruction to the image's config (CMD, ENTRYPOINT, ENV, "
    "EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.",
)
@click.option("-m", "--message", help="The history's comment (default: Imported from SOURCE).")
@compress.options
@epoch.option
@click.pass_context
def import_(
    ctx: click.Context,
    source: Path,
    name: str,
    changes: tuple[str, ...],
    message: str | None,
    compression: str | None,
    compression_level: int | None,
    force_compression: bool | None,
    source_date_epoch: str | None,
) -> None:
    """Make a one-layer image NAME[:TAG] from a rootfs directory or tarball (plain, gzip, zstd)."""
    from builder.engine.changes import apply_changes
    from builder.image.compression import LayerCompression
    from builder.image.config import ContainerConfig
    from builder.image.reference import Reference
    from builder.store.importer import import_rootfs

    ref = str(Reference.parse(name))
    config = apply_changes(ContainerConfig(), changes)  # a bad change fails before any work
    sde = epoch.source_date_epoch(source_date_epoch)
    # The one layer is always written anew: force has nothing to redo.
    wanted = compress.requested(compression, compression_level, force_compression)
    wanted = wanted or LayerCompression()
    manifest = import_rootfs(
        open_store(ctx),
        source,
        ref,
        wanted.kind,
        level=wanted.level,
        source_date_epoch=sde,
        config=config,
        message=message,
    )
    click.echo(str(manifest.digest))


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("-q", "--quiet", is_flag=True, help="Only image IDs.")
@click.pass_context
def images(ctx: click.Context, fmt: str, quiet: bool) -> None:
    """List the images in the store."""
    from builder.cli.progress import human_size
    from builder.image.reference import Reference

    store = open_store(ctx)
    rows = []
    for name, desc in sorted(store.layout.refs()):
        image = store.image(desc)
        ref = Reference.parse(name)
        rows.append(
            {
                "Repository": ref.name,
                "Tag": ref.tag or "",
                "Id": str(image.id),
                "Digest": str(image.digest),
                "Created": image.config.created or "",
                "Size": image.size,
            }
        )
    if quiet:
        for row in rows:
            click.echo(str(row["Id"]).partition(":")[2][:12])
    elif fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        header = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
        table = [header] + [
            (
                str(r["Repository"]),
                str(r["Tag"]),
                str(r["Id"]).partition(":")[2][:12],
                str(r["Created"])[:19].replace("T", " "),
                human_size(int(str(r["Size"]))),
            )
            for r in rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for line in table:
            click.echo(
                "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            )


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Print images as JSON: manifest digest, image ID, manifest and config."""
    store = open_store(ctx)
    shown = []
    for name in names:
        image = store.image(name)
        shown.append(
            {
                "Name": name,
                "Id": str(image.id),
                "Digest": str(image.digest),
                "Manifest": image.manifest.to_json(),
                "Config": image.config.to_json(),
                "Size": image.size,
            }
        )
    click.echo(json.dumps(shown, indent=2))


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove an image by ID even if several names it.")
@click.pass_context
def rmi(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove images from the store: a NAME untags that name; an image ID (a prefix will
    do) or a manifest digest removes the image and every name it has, as docker rmi does
    (blobs go at the next garbage collection)."""
    from builder.errors import ImageNotFound, StoreError, UsageError

    store = open_store(ctx)
    for name in names:
        try:
            store.layout.untag(name)
            click.echo(f"untagged {name}")
            continue
        except (ImageNotFound, UsageError):
            desc = store.layout.resolve(name)  # an ID prefix or a digest; else ImageNotFound
        named = sorted(ref for ref, d in store.layout.refs() if d.digest == desc.digest)
        if len(named) > 1 and not force:
            raise UsageError(
                f"conflict: unable to delete {name} (must be forced): the image is named"
                f" {', '.join(named)}"
            )
        store.layout.forget(desc.digest)
        for ref in named:
            click.echo(f"untagged {ref}")
        click.echo(f"deleted {desc.digest}")
    try:
        store.gc()
    except StoreError as err:  # a build holds a lease: its blobs must stay; gc later
        click.echo(f"warning: blobs kept for now: {err}", err=True)


@click.command()
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Give the image SOURCE names (a name, digest or ID prefix) the name TARGET too."""
    from builder.errors import UsageError
    from builder.image.reference import Reference

    ref = Reference.parse(target)
    if ref.digest is not None:
        raise UsageError(f"cannot tag as {target}: a tag names no digest (drop the @sha256:...)")
    store = open_store(ctx)
    name = str(ref)
    store.layout.tag(name, store.layout.resolve(source).with_annotations(None))
    click.echo(f"tagged {name}")
