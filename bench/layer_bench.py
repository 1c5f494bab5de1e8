"""Layer writing speed: write_layer against `tar -c --sort=name | zstd -T0 -3` on the same tree.

    .venv/bin/python bench/layer_bench.py [workdir] [--convert-only] [--small-only] [--runs N]

Two trees: 50,000 small files (metadata-bound) and 200 MB in 20 files (compression-bound).
Ours and the CLI pipe run in alternation on the same tree in the same run (the machine is
shared: alternation spreads other load over both), N times each (default 5); prints each
one's median seconds and the ratio of the medians ours / CLI (lower is better; issue 9's
goal for the small files is <= 1.2).

Then the cost of converting the 200 MB layer between gzip and zstd in a store (what a build
asked for another compression pays once per layer: the source read and verified, the tar
hashed against its diff_id, the new blob hashed and fsynced) against the CLIs' pipe
`gzip -dc | zstd -3 -T0` and `zstd -dc | gzip -6 -n`, which verify and hash nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.image import Layer
from builder.image.mediatypes import Compression
from builder.layer.write import write_layer
from builder.store import Store


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


def time_ours(src: Path, out: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of every thread and of the entry helper, blob bytes) of write_layer."""
    os.sync()  # untimed: write back what the last run left dirty
    cpu, start = time.process_time() + _children_cpu(), time.perf_counter()
    with open(out, "wb") as f:
        digests = write_layer(src, f, Compression.ZSTD)
    wall = time.perf_counter() - start
    return wall, time.process_time() + _children_cpu() - cpu, digests.size


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_cli(src: Path, out: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of tar and zstd, blob bytes) of the pipe."""
    # No --xattrs: the reference is the plain pipe the issue names (with it, GNU tar does
    # one llistxattr per entry as we do, and is slower).
    cmd = f"tar -c --sort=name -C {src} -f - . | zstd -T0 -3 -q -o {out} -f"
    os.sync()
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run(["sh", "-c", cmd], check=True)
    return time.perf_counter() - start, _children_cpu() - cpu, out.stat().st_size


class Alternated(NamedTuple):
    ours: float  # median wall seconds
    ours_cpu: float  # median CPU seconds (all threads)
    ours_size: int
    cli: float
    cli_cpu: float
    cli_size: int


def interleaved(src: Path, base: Path, runs: int) -> Alternated:
    """Medians of `runs` alternating runs of ours and the CLI pipe. Wall time is what a user
    waits; CPU time shows the work itself when other load on the machine skews the wall
    (a pipe of two processes gets more of a busy machine than one process does)."""
    ours: list[tuple[float, float, int]] = []
    cli: list[tuple[float, float, int]] = []
    for _ in range(runs):
        ours.append(time_ours(src, base / "ours.zst"))
        cli.append(time_cli(src, base / "cli.zst"))

    def med(rows: list[tuple[float, float, int]], i: int) -> float:
        return statistics.median(row[i] for row in rows)

    return Alternated(med(ours, 0), med(ours, 1), ours[-1][2], med(cli, 0), med(cli, 1), cli[-1][2])


def _timed(action: Callable[[], object]) -> float:
    os.sync()  # untimed: write back what the last run left dirty
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def conversions(src: Path, base: Path) -> None:
    """gzip -> zstd and zstd -> gzip of one 200 MB layer: ours in a store, the CLIs' pipe."""
    root = base / "store"
    shutil.rmtree(root, ignore_errors=True)
    store = Store.open(root)
    made = {kind: store.put_layer(src, kind) for kind in (Compression.GZIP, Compression.ZSTD)}
    for source, target in ((Compression.GZIP, Compression.ZSTD),
                           (Compression.ZSTD, Compression.GZIP)):  # fmt: skip
        blob, diff_id = made[source]
        path = store.paths.blob(blob.digest)
        out = base / f"cli.{target.value}"
        flag = "-3 -T0 -q -f -o" if target is Compression.ZSTD else "-6 -n >"
        pipe = f"{source.value} -dc {path} | {target.value} {flag} {out} && sync {out}"
        tar_mb = sum(p.stat().st_size for p in src.iterdir()) / 1e6

        def ours(
            blob: Descriptor = blob, diff_id: Digest = diff_id, target: Compression = target
        ) -> None:
            store.variants.convert(Layer(blob, diff_id), target, None)

        ours_s = min(_timed(ours) for _ in range(3))
        cli_s = min(_timed(lambda pipe=pipe: subprocess.run(["sh", "-c", pipe], check=True))
                    for _ in range(3))  # fmt: skip
        print(
            f"convert {tar_mb:.0f} MB {source.value}->{target.value:4s} ours {ours_s:6.2f}s"
            f"  {source.value} -dc | {target.value} {cli_s:6.2f}s  ratio {ours_s / cli_s:4.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", nargs="?", type=Path)
    parser.add_argument("--convert-only", action="store_true")
    parser.add_argument("--small-only", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    if opts.workdir:
        run(opts, opts.workdir)
        return
    # Without a workdir the trees (1.2 GB with the 200 MB case) are made for this run only.
    with tempfile.TemporaryDirectory(prefix="lbench-") as scratch:
        run(opts, Path(scratch))


def run(opts: argparse.Namespace, base: Path) -> None:
    cases: tuple[tuple[str, Callable[[Path], None]], ...] = (
        ("50k small files", small_files),
        ("200 MB in 20 files", big_files),
    )
    if opts.convert_only:
        cases = cases[1:]
    elif opts.small_only:
        cases = cases[:1]
    for name, make in cases:
        src = base / name.replace(" ", "_")
        src.mkdir(parents=True, exist_ok=True)
        if not any(src.iterdir()):
            make(src)
        subprocess.run(["sh", "-c", f"tar -C {src} -cf - . > /dev/null"], check=True)  # warm
        if opts.convert_only:
            break
        r = interleaved(src, base, opts.runs)
        print(
            f"{name:20s} ours {r.ours:6.2f}s ({r.ours_size / 1e6:7.1f} MB)  "
            f"tar|zstd {r.cli:6.2f}s ({r.cli_size / 1e6:7.1f} MB)  ratio {r.ours / r.cli:4.2f}"
            f"  (CPU {r.ours_cpu:5.2f}s / {r.cli_cpu:5.2f}s = {r.ours_cpu / r.cli_cpu:4.2f};"
            f" medians of {opts.runs}, alternating)",
            flush=True,
        )
    if not opts.small_only:
        conversions(base / "200_MB_in_20_files", base)


if __name__ == "__main__":
    main()
