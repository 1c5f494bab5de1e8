"""`build -o/--output` as buildx spells it, and what the build does with each output.

    -o type=image[,name=N][,push=true][,oci-mediatypes=false]   the store (the default)
    -o type=registry[,name=N][,oci-mediatypes=false]            push (type=image,push=true)
    -o type=oci,dest=FILE   -o type=docker,dest=FILE            archives (name=N: the names in it)
    -o type=tar,dest=FILE   -o type=local,dest=DIR              the flattened root filesystem
    -o DIR  (type=local)    -o -  (type=tar to stdout)          buildx's shorthands
    dest=- writes to stdout (not for type=local).

The store always keeps the built image, whatever the outputs: it is the build's cache, and
the exporters read the image from it. `name=` adds names to -t's; archives and pushes use
`name=` if given, else the -t names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from builder.cli.attrs import parse_attrs
from builder.errors import UsageError
from builder.record import dataclass

if TYPE_CHECKING:
    from builder.cli.progress import Renderer
    from builder.image.image import Image
    from builder.store import Store

TYPES = ("image", "registry", "oci", "docker", "tar", "local")
# buildx's keys for the layers' compression (LayerCompression.from_attrs reads them).
COMPRESSION_KEYS = ("compression", "compression-level", "force-compression")
_KEYS = {
    "image": {"name", "push", "oci-mediatypes", *COMPRESSION_KEYS},
    "registry": {"name", "oci-mediatypes", *COMPRESSION_KEYS},
    "oci": {"dest", "name", "oci-mediatypes", *COMPRESSION_KEYS},
    "docker": {"dest", "name", *COMPRESSION_KEYS},
    "tar": {"dest"},
    "local": {"dest"},
}
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
STDOUT = "-"

# The push of type=registry (and type=image,push=true): push `image` from `store` under each
# of `refs`. The registry client (builder/registry, helper "net") provides it; see pusher().
Pusher = Callable[["Store", "Image", Sequence[str]], None]


def pusher(report: Renderer) -> Pusher:
    """The registry push for outputs that push (it loads the registry client only when it
    runs); named before the build starts, so a bad output fails before any work."""

    def push(store: Store, image: Image, refs: Sequence[str]) -> None:
        from builder.registry.push import push as push_to

        for ref in refs:
            push_to(store, image.descriptor, ref, report=report)

    return push


def _silent(_event: object) -> None:
    """No progress (callers that give no renderer)."""


@dataclass(frozen=True)
class Output:
    type: str
    dest: str | None = None  # a path, or "-" for stdout
    names: tuple[str, ...] = ()
    push: bool = False
    oci_mediatypes: bool | None = None  # None: not said
    compression: tuple[tuple[str, str], ...] = ()  # the COMPRESSION_KEYS given, as written

    @property
    def pushes(self) -> bool:
        return self.type == "registry" or self.push


def _bool(key: str, value: str, spec: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise UsageError(f"--output {spec!r}: {key}={value!r}: expected true or false")


def parse_output(spec: str) -> Output:
    """One -o value; UsageError naming what is wrong."""
    if spec == STDOUT:
        return Output("tar", STDOUT)
    if "=" not in spec:
        return Output("local", spec)
    attrs = parse_attrs("--output", spec)
    kind = attrs.pop("type", "")
    if kind not in TYPES:
        raise UsageError(
            f"--output {spec!r}: type must be one of {', '.join(TYPES)}"
            + (f", not {kind!r}" if kind else "")
        )
    unknown = sorted(set(attrs) - _KEYS[kind])
    if unknown:
        raise UsageError(
            f"--output {spec!r}: type={kind} takes {', '.join(sorted(_KEYS[kind]))};"
            f" not {', '.join(unknown)}"
        )
    dest = attrs.get("dest")
    if "dest" in _KEYS[kind]:
        if not dest:
            raise UsageError(f"--output {spec!r}: type={kind} needs dest=PATH (or dest=-)")
        if kind == "local" and dest == STDOUT:
            raise UsageError(f"--output {spec!r}: type=local writes a directory, not stdout")
    names = tuple(n.strip() for n in attrs.get("name", "").split(",") if n.strip())
    push = _bool("push", attrs["push"], spec) if "push" in attrs else False
    oci = attrs.get("oci-mediatypes")
    return Output(
        kind,
        dest,
        names,
        push,
        None if oci is None else _bool("oci-mediatypes", oci, spec),
        tuple((key, attrs[key].lower()) for key in COMPRESSION_KEYS if key in attrs),
    )


@dataclass(frozen=True)
class Plan:
    """Every -o of a build, checked together before the build starts."""

    outputs: tuple[Output, ...]
    oci_mediatypes: bool  # the image is written with OCI media types (else Docker's)
    pusher: Pusher | None  # set when an output pushes

    def compression_attrs(self) -> dict[str, str]:
        """The compression keys of every output: the image has one set of layers."""
        merged: dict[str, str] = {}
        for output in self.outputs:
            for key, value in output.compression:
                if merged.setdefault(key, value) != value:
                    raise UsageError(f"--output: {key} is given as both {merged[key]} and {value}")
        return merged

    def registry_names(self) -> tuple[str, ...]:
        """The names given to the outputs that push."""
        return tuple(n for o in self.outputs if o.pushes for n in o.names)

    def extra_names(self) -> tuple[str, ...]:
        """Names that `type=image,name=...` adds to the -t names in the store."""
        return tuple(n for o in self.outputs if o.type == "image" for n in o.names)


def plan_outputs(
    specs: Sequence[str], oci_mediatypes: bool | None, report: Renderer | None = None
) -> Plan:
    """Parse the -o values with `--oci-mediatypes` (None: not given); UsageError on a conflict."""
    outputs = tuple(parse_output(s) for s in specs) or (Output("image"),)
    said = {o.oci_mediatypes for o in outputs if o.oci_mediatypes is not None}
    if oci_mediatypes is not None:
        said.add(oci_mediatypes)
    if len(said) > 1:
        raise UsageError("oci-mediatypes is given both true and false: the image has one set")
    if sum(o.dest == STDOUT for o in outputs) > 1:
        raise UsageError("only one output can go to stdout (dest=-)")
    for o in outputs:
        if o.dest is not None and o.dest != STDOUT:
            parent = Path(o.dest).parent
            if not parent.is_dir():  # fail before the build, not after it
                raise UsageError(f"--output dest={o.dest}: the directory {parent} does not exist")
    push = pusher(report or _silent) if any(o.pushes for o in outputs) else None
    return Plan(outputs, said != {False}, push)


def write_outputs(
    store: Store, image: Image, plan: Plan, tags: Sequence[str], stdout: BinaryIO
) -> None:
    """Write the built `image` to every output of `plan` (the store has it already)."""
    # Each writer is imported for an output of its type: the default output (the store)
    # needs none, and a cached build does not pay for their imports.
    for o in plan.outputs:
        names = o.names or tuple(tags)
        target: Path | BinaryIO = stdout if o.dest == STDOUT else Path(o.dest or "")
        if o.type in ("oci", "docker"):
            from builder.store.archive import OciArchiveWriter
            from builder.store.docker_archive import DockerArchiveWriter
            from builder.store.export import ArchiveWriter, LayoutReader, write_archive

            writer: ArchiveWriter = (
                OciArchiveWriter() if o.type == "oci" else DockerArchiveWriter(store.paths.tmp)
            )
            write_archive(LayoutReader.of_image(store.layout, image, names), target, writer)
        elif o.type == "tar":
            from builder.store.rootfs import write_rootfs_tar

            write_rootfs_tar(store, image, target)
        elif o.type == "local":
            from builder.store.rootfs import export_rootfs_dir

            export_rootfs_dir(store, image, Path(o.dest or ""))
        if o.pushes:
            if not names:
                raise UsageError(f"--output type={o.type}: a push needs a name (-t or name=)")
            assert plan.pusher is not None
            plan.pusher(store, image, names)


def write_metadata(path: Path, image: Image, names: Sequence[str]) -> None:
    """`--metadata-file`: the keys buildx writes for an image build."""
    from builder.image.reference import Reference
    from builder.store.destination import output_file

    desc = image.descriptor
    descriptor: dict[str, object] = {
        "mediaType": str(desc.media_type),
        "digest": str(desc.digest),
        "size": desc.size,
    }
    if desc.platform is not None:
        descriptor["platform"] = desc.platform.to_json()
    data: dict[str, object] = {
        "containerimage.config.digest": str(image.id),
        "containerimage.descriptor": descriptor,
        "containerimage.digest": str(image.digest),
    }
    if names:
        refs = (Reference.parse(n) for n in names)
        # buildx writes names fully qualified: docker.io/library/busybox:latest
        data["image.name"] = ",".join(
            f"{r.registry}/{r.repository}" + (f":{r.tag}" if r.tag else "")
            + (f"@{r.digest}" if r.digest else "")
            for r in refs
        )  # fmt: skip
    with output_file(path) as out:
        out.write(json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")
