"""Export: a layout reader (named images and their blobs) composed with an archive writer.

`builder save` is export(store.layout, names, out, OciArchiveWriter()); other formats (the
docker archive of docker_archive.py, a registry push) are other writers reading the same
LayoutReader. write_archive() writes to a stream (stdout); export() to a file, atomically.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from builder.errors import StoreError
from builder.image.descriptor import Descriptor
from builder.image.image import Image
from builder.image.reference import Reference
from builder.record import dataclass
from builder.store.destination import output_file
from builder.store.layout import OciLayout


@dataclass(frozen=True)
class NamedImage:
    """An image and the name it was asked for by (an archive records it; None: unnamed,
    as the image of a build without -t)."""

    name: Reference | None
    image: Image


class LayoutReader:
    """The images named, resolved at once (an unknown name fails before any output), and
    their blobs, each once, read digest-verified."""

    def __init__(
        self, layout: OciLayout, names: Sequence[str], images: Sequence[NamedImage] = ()
    ) -> None:
        self._layout = layout
        self.images = tuple(images) + tuple(
            NamedImage(Reference.parse(name), layout.image(layout.resolve(name))) for name in names
        )

    @classmethod
    def of_image(cls, layout: OciLayout, image: Image, names: Sequence[str] = ()) -> LayoutReader:
        """One image under each of `names` (or once, unnamed): a build's result."""
        refs: list[Reference | None] = [Reference.parse(name) for name in names]
        return cls(layout, (), [NamedImage(ref, image) for ref in refs or [None]])

    def blobs(self) -> Iterator[Descriptor]:
        """Every blob of every image, each once, in the order the images list them."""
        seen: set[str] = set()
        for named in self.images:
            for blob in named.image.blobs():
                if blob.digest not in seen:
                    seen.add(blob.digest)
                    yield blob

    def size(self, blob: Descriptor) -> int:
        """The stored size (a descriptor's size is a claim; the file's is what is streamed)."""
        size = self._layout.stat(blob.digest)
        if size is None:
            raise StoreError(f"blob {blob.digest} is missing from the store")
        return size

    def open(self, blob: Descriptor) -> BinaryIO:
        """The blob's bytes; reading to the end raises StoreError if they are corrupt (a
        writer that reads only `size(blob)` bytes must then read once more, to see the end)."""
        return self._layout.open(blob.digest)


class ArchiveWriter(Protocol):
    def write(self, source: LayoutReader, out: BinaryIO) -> None: ...


def export(layout: OciLayout, names: Sequence[str], out: Path, writer: ArchiveWriter) -> None:
    """Write the named images to `out`: whole (temp file, fsync, rename) or not at all."""
    write_archive(LayoutReader(layout, names), out, writer)


def write_archive(source: LayoutReader, out: Path | BinaryIO, writer: ArchiveWriter) -> None:
    """Write `source` to a path (atomically) or to an open stream (stdout)."""
    if isinstance(out, Path):
        with output_file(out) as stream:
            writer.write(source, stream)
    else:
        writer.write(source, out)
