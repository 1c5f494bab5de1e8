"""`builder build`: docker build's flags, over builder.engine.engine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.cli import cache, compress, epoch, limits, netflags, snapshotter
from builder.cli.common import open_store
from builder.errors import StoreError, UsageError

if TYPE_CHECKING:
    from builder.cli.outputs import Plan
    from builder.store import Store


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


def parse_allow(values: tuple[str, ...]) -> frozenset[str]:
    """`--allow network.host`, `--allow security.insecure`: BuildKit's entitlement names."""
    from builder.engine.options import ENTITLEMENTS

    for value in values:
        if value not in ENTITLEMENTS:
            raise UsageError(
                f"--allow {value!r}: invalid entitlement (one of: {', '.join(ENTITLEMENTS)})"
            )
    return frozenset(values)


# BuildKit's bound on one secret (session/secrets: 500 KB); it is held in memory.
MAX_SECRET = 500 * 1024


def parse_secrets(values: tuple[str, ...]) -> dict[str, bytes]:
    """`--secret id=ID,src=FILE` or `id=ID,env=VAR` (docker build's syntax), read into
    memory now: a secret is never copied to a file (the sandbox writes it to a tmpfs of
    its own), so a killed build leaves it nowhere on disk."""
    import os

    secrets: dict[str, bytes] = {}
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
            secrets[ident] = _read_secret(ident, source)
        elif env is not None:
            if env not in os.environ:
                raise UsageError(f"--secret id={ident}: ${env} is not set")
            secrets[ident] = os.environb[os.fsencode(env)]
        if len(secrets[ident]) > MAX_SECRET:
            raise UsageError(f"--secret id={ident}: larger than {MAX_SECRET // 1024} KB")
    return secrets


def _read_secret(ident: str, source: str) -> bytes:
    import os
    import stat

    path = Path(source).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        raise UsageError(f"--secret id={ident}: {source}: {err.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"--secret id={ident}: {source} is not a file")
        return os.read(fd, MAX_SECRET + 1)  # one byte more says it is too big
    finally:
        os.close(fd)


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
    help="RUN's network: default is a private network with outbound access (slirp4netns);"
    " none is loopback only; host is the host's network.",
)
@netflags.add_host_option
@netflags.userns_option
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="ENTITLEMENT",
    help="Let RUN steps use network.host (RUN --network=host) or security.insecure"
    " (repeatable). --network host allows network.host itself.",
)
@click.option("--label", "labels", multiple=True, help="Set a label on the image: KEY=VALUE.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    help="A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR.",
)
@compress.options
@cache.options
@limits.options
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    help="Where the image goes, as buildx spells it (repeatable): type=image (the store, the"
    " default), type=registry, type=oci|docker|tar,dest=FILE, type=local,dest=DIR; dest=- is"
    " stdout.",
)
@click.option(
    "--oci-mediatypes",
    type=click.BOOL,
    default=None,
    help="false: write the image with Docker schema 2 media types (gzip layers), for old"
    " registries.",
)
@click.option(
    "--metadata-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write buildx's build metadata (image digest, config digest, descriptor, names) here.",
)
@click.option(
    "--pull", is_flag=True, help="Ask the registry for every base image, even one in the store."
)
@click.option("--push", is_flag=True, help="Push every -t name after the build.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Build at most N independent stages at once (default: the CPU count; 1: one by"
    " one, in order). Their log lines are prefixed with the stage's name.",
)
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
    add_hosts: tuple[str, ...],
    userns: str,
    allow: tuple[str, ...],
    labels: tuple[str, ...],
    secrets: tuple[str, ...],
    compression: str | None,
    compression_level: int | None,
    force_compression: bool | None,
    outputs: tuple[str, ...],
    oci_mediatypes: bool | None,
    metadata_file: Path | None,
    pull: bool,
    push: bool,
    jobs: int | None,
    cache_from: tuple[str, ...],
    cache_to: tuple[str, ...],
    source_date_epoch: str | None,
    memory: str | None,
    memory_swap: str | None,
    cpus: str | None,
    pids_limit: int | None,
    cgroup_parent: str | None,
) -> None:
    """Build an image from a recipe and a build CONTEXT directory."""
    import sys

    from builder.cli.outputs import plan_outputs
    from builder.cli.progress import renderer
    from builder.cli.registry import puller
    from builder.engine.engine import build as run_build
    from builder.engine.options import BuildOptions
    from builder.image.compression import LayerCompression
    from builder.image.reference import Reference

    entitlements = parse_allow(allow)
    resources = limits.limits(
        memory,
        memory_swap,
        cpus,
        pids_limit,
        cgroup_parent,
        default_pids=limits.build_pids_default(),
    )
    report = renderer("quiet" if quiet else progress)
    if push:  # buildx's --push: an output of type registry
        outputs = (*outputs, "type=registry")
    plan = plan_outputs(outputs, oci_mediatypes, report)
    names = tuple(dict.fromkeys(str(Reference.parse(tag)) for tag in tags + plan.extra_names()))
    # The flags, then -o's keys over them (key by key, as buildx merges them).
    wanted = compress.attrs(compression, compression_level, force_compression)
    wanted |= plan.compression_attrs()
    if not plan.oci_mediatypes and wanted.setdefault("compression", "gzip") == "zstd":
        # Docker's media types name gzip layers, and no zstd ones.
        raise UsageError(
            "--compression zstd with --oci-mediatypes=false: Docker's media types have no name"
            " for zstd layers; use gzip"
        )
    if any(o.dest == "-" for o in plan.outputs):
        if quiet:
            raise UsageError("-q prints the image ID on stdout, where an output (dest=-) goes")
        if sys.stdout.isatty():
            raise UsageError("dest=- would write an archive to a terminal: redirect stdout")
    for flag, path in (("--metadata-file", metadata_file), ("--iidfile", iidfile)):
        if path is not None and str(path) != "-" and not path.parent.is_dir():
            raise UsageError(f"{flag} {path}: its directory does not exist")  # before the work
    if plan.pusher is not None and not names and not plan.registry_names():
        raise UsageError("--push (or -o type=registry) needs a name to push: give -t NAME")
    imports, exports = cache.cache_imports(cache_from), cache.cache_exports(cache_to, report)
    store = open_store(ctx)
    sde = epoch.source_date_epoch(source_date_epoch)
    # The lease keeps an untagged result's blobs from gc until every output is written.
    with store.lease():
        options = BuildOptions(
            context=context,
            recipe=recipe,
            tags=names if plan.oci_mediatypes else (),  # tagged once converted
            build_args=parse_build_args(build_args),
            target=target,
            no_cache=no_cache,
            compression=LayerCompression.from_attrs(wanted),
            network=network,
            add_hosts=netflags.add_hosts(add_hosts),
            userns="auto" if userns == "auto" else "host",
            allow=entitlements,
            secrets=parse_secrets(secrets),
            labels=parse_labels(labels),
            source_date_epoch=sde,
            pull=pull,
            cache_from=imports,
            cache_to=exports,
            limits=resources,
            jobs=jobs,
            snapshotter=snapshotter.forced(),
        )
        result = run_build(options, store, report, puller=puller(store, report))
        _finish(store, result.manifest_digest, plan, names, metadata_file)
    if iidfile is not None:
        _write_iidfile(iidfile, result.image_id)
    if quiet:
        click.echo(result.image_id)


def _write_iidfile(path: Path, image_id: str) -> None:
    """--iidfile, as every output file: whole or not at all, devices in place, `-` stdout."""
    if str(path) == "-":
        click.echo(image_id, nl=False)
        return
    from builder.store.destination import output_file

    with output_file(path) as out:
        out.write(image_id.encode())


def _finish(
    store: Store, manifest_digest: str, plan: Plan, names: tuple[str, ...], metadata: Path | None
) -> None:
    """After the build: Docker media types if asked, the outputs, the metadata file."""
    import sys

    from builder.cli.outputs import write_metadata, write_outputs
    from builder.image.descriptor import Descriptor, Platform
    from builder.image.digest import Digest
    from builder.image.image import Image
    from builder.image.mediatypes import MediaType

    digest = Digest(manifest_digest)
    size = store.layout.stat(digest)
    if size is None:
        raise StoreError(f"the built manifest {digest} is missing from the store")
    image = store.layout.image(Descriptor(MediaType.OCI_MANIFEST, digest, size))
    platform = Platform(image.config.architecture, image.config.os, image.config.variant)
    image = Image(
        Descriptor(MediaType.OCI_MANIFEST, digest, size, platform=platform),
        image.manifest,
        image.config,
    )
    if not plan.oci_mediatypes:
        from builder.store.docker_types import with_docker_media_types

        image = with_docker_media_types(store, image)
        for name in names:
            store.layout.tag(name, image.descriptor)
    write_outputs(store, image, plan, names, sys.stdout.buffer)
    if metadata is not None:
        write_metadata(metadata, image, names)
