"""Helpers for the engine's unit tests: contexts, builds with the fake executor, and reading
back what a build made (its config, its layers' entries, every step's cache key)."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from builder.engine import engine as engine_module
from builder.engine.engine import build
from builder.engine.events import Event, StepDone, StepOutput, StepStarted
from builder.engine.options import BuildOptions, BuildResult
from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext
from builder.image.config import ContainerConfig, History, ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.mediatypes import MediaType
from builder.layer.compression import open_decompressed
from builder.recipe.instructions import Instruction
from builder.store import Store
from tests.engine.fakes import FakeExecutor

Files = Mapping[str, str | bytes]


def write_tree(root: Path, files: Files) -> None:
    """Files (and dirs, for a name ending in '/') with fixed modes: a key holds the mode,
    so it must not follow the umask."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
            os.chmod(path, 0o755)
            continue
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        os.chmod(path, 0o644)
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)


def make_context(root: Path, recipe: str, files: Files | None = None) -> Path:
    write_tree(root, {"Dockerfile": recipe, **(files or {})})
    return root


@dataclass
class Built:
    result: BuildResult
    events: list[Event] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)  # (instruction, key after it)

    @property
    def cached(self) -> list[bool]:
        return [e.cached for e in self.events if isinstance(e, StepDone)]

    @property
    def step_texts(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, StepStarted)]

    @property
    def stages(self) -> list[str]:
        """The stage labels in the order their steps ran, each once."""
        seen: list[str] = []
        for e in self.events:
            if isinstance(e, StepStarted) and e.stage not in seen:
                seen.append(e.stage)
        return seen

    @property
    def output(self) -> list[str]:
        return [e.line for e in self.events if isinstance(e, StepOutput)]


def run_build(
    store: Store,
    context: Path,
    fake: FakeExecutor,
    monkeypatch: pytest.MonkeyPatch,
    **options: Any,
) -> Built:
    """Build with the real engine and the fake executor, noting each step's cache key."""
    options.setdefault("compression", "gzip")  # tarfile reads it, no zstd needed
    options.setdefault("tags", ("built",))
    keys: list[tuple[str, str]] = []
    execute = engine_module.execute

    def noting(instr: Instruction, state: ImageState, ctx: StepContext) -> ImageState:
        after = execute(instr, state, ctx)
        keys.append((" ".join(instr.original.split()), after.key))
        return after

    events: list[Event] = []
    with monkeypatch.context() as patch:
        patch.setattr(engine_module, "execute", noting)
        result = build(
            BuildOptions(context=context, **options), store, events.append, executor=fake
        )
    return Built(result, events, keys)


def image(store: Store, built: Built) -> tuple[ImageConfig, tuple[Descriptor, ...]]:
    stored = store.image(built.result.tags[0])
    return stored.config, stored.manifest.layers


@dataclass(frozen=True)
class Entry:
    info: tarfile.TarInfo
    data: bytes | None


def layer_entries(store: Store, layer: Descriptor) -> dict[str, Entry]:
    """A layer blob's tar entries by name (no leading './' or '/', dirs without '/')."""
    entries: dict[str, Entry] = {}
    with (
        store.layout.open(layer.digest) as blob,
        open_decompressed(blob) as raw,
        tarfile.open(fileobj=raw, mode="r|") as tar,
    ):
        for info in tar:
            reader = tar.extractfile(info) if info.isfile() else None
            name = info.name.removeprefix("./").strip("/")
            entries[name] = Entry(info, reader.read() if reader else None)
    return entries


def files_of(store: Store, layer: Descriptor) -> dict[str, bytes | None]:
    return {name: e.data for name, e in layer_entries(store, layer).items()}


def _tar(members: Mapping[str, str | bytes | None]) -> bytes:
    """A layer tar owned by root with fixed times: its digest is the same for anyone."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_000_000_000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = content.encode() if isinstance(content, str) else content
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def add_image(
    store: Store,
    name: str,
    members: Mapping[str, str | bytes | None],
    config: ContainerConfig | None = None,
) -> Descriptor:
    """A one-layer image, the same bytes on every machine and for every user.

    The layer's unpacked dir is put in place by us, not unpacked by the store: unpacking
    chowns to the tar's uid 0, which only root may do.
    """
    layer = store.layout.put(_tar(members), MediaType.OCI_LAYER)
    unpacked = store.tmp_dir("base")
    for path, content in members.items():
        target = unpacked / path
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
    store.layers.adopt(layer.digest, unpacked)
    image_config = ImageConfig(
        architecture="amd64",
        os="linux",
        created="2001-09-09T01:46:40Z",
        config=config or ContainerConfig(env=("PATH=/usr/bin:/bin",), cmd=("sh",)),
        diff_ids=(layer.digest,),
        history=(History(created="2001-09-09T01:46:40Z", created_by="test base"),),
    )
    written = store.write_image(image_config, (layer,))
    store.layout.tag(name, written.descriptor)
    return written.descriptor
