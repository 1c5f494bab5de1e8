"""Layer writing speed: write_layer against `tar --sort=name | zstd -3 -T0` on the same tree.

    .venv/bin/python bench/layer_bench.py [workdir]

Two trees: 50,000 small files (metadata-bound) and 200 MB in 20 files (compression-bound).
Prints seconds for each and the ratio ours / CLI (lower is better).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builder.image.mediatypes import Compression
from builder.layer.write import write_layer


def small_files(root: Path, count: int = 50_000) -> None:
    rng = random.Random(1)
    for i in range(count):
        d = root / f"d{i // 500:03d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(b"line %d\n" % i * rng.randint(1, 40))


def big_files(root: Path, total_mb: int = 200, files: int = 20) -> None:
    rng = random.Random(2)
    words = [bytes(rng.choices(b"abcdefghijklmnop", k=8)) for _ in range(4096)]
    for i in range(files):
        # Half text-like (compressible), half random: a realistic mix for a layer.
        chunk = b" ".join(rng.choices(words, k=(total_mb << 20) // files // 18))
        chunk += os.urandom((total_mb << 20) // files // 2)
        (root / f"blob{i:02d}").write_bytes(chunk)


def time_ours(src: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with open(out, "wb") as f:
        digests = write_layer(src, f, Compression.ZSTD)
    return time.perf_counter() - start, digests.size


def time_cli(src: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    cmd = f"tar --sort=name --xattrs -C {src} -cf - . | zstd -3 -T0 -q -o {out} -f"
    subprocess.run(["sh", "-c", cmd], check=True)
    return time.perf_counter() - start, out.stat().st_size


def main() -> None:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="lbench-"))
    for name, make in (("50k small files", small_files), ("200 MB in 20 files", big_files)):
        src = base / name.replace(" ", "_")
        src.mkdir(parents=True, exist_ok=True)
        if not any(src.iterdir()):
            make(src)
        subprocess.run(["sh", "-c", f"tar -C {src} -cf - . > /dev/null"], check=True)  # warm
        ours, ours_size = min(time_ours(src, base / "ours.zst") for _ in range(3))
        cli, cli_size = min(time_cli(src, base / "cli.zst") for _ in range(3))
        print(
            f"{name:20s} ours {ours:6.2f}s ({ours_size / 1e6:7.1f} MB)  "
            f"tar|zstd {cli:6.2f}s ({cli_size / 1e6:7.1f} MB)  ratio {ours / cli:4.2f}"
        )


if __name__ == "__main__":
    main()
