"""What the store tests share: a store with small real images in it."""

from __future__ import annotations

from pathlib import Path

from builder.image.config import ContainerConfig, History, ImageConfig
from builder.image.digest import Digest
from builder.image.image import Image
from builder.image.mediatypes import Compression
from builder.store import Store


def make_image(store: Store, tmp: Path, text: str, name: str | None = None) -> Image:
    """A one-layer image holding /etc/msg = text, tagged `name` if given."""
    src = tmp / f"src-{text}"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "msg").write_text(text)
    # Debian's oci-image-tool (1.0.0-rc1) predates zstd layers: gzip for the oracle.
    layer, diff_id = store.put_layer(src, Compression.GZIP)
    config = ImageConfig(created="2024-01-01T00:00:00Z",
                         config=ContainerConfig(cmd=("/bin/sh",)))  # fmt: skip
    config = config.with_layer(diff_id, History(created_by=f"ADD {text}"))
    image = store.write_image(config, [layer])
    if name is not None:
        store.layout.tag(name, image.descriptor)
    return image


def corrupt(store: Store, digest: Digest) -> None:
    """Flip the blob's last byte: same size, wrong content."""
    path = store.paths.blob(digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
