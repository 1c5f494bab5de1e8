#!/usr/bin/env python3
"""big-rootfs-small-change, cold: our overhead beyond the RUN step itself.

    .venv/bin/python bench/floor_bench.py [--runs 4]

The cold cell is mostly the recipe's first RUN creating 50,000 files, and file creation on
this machine class (ext4 without a journal) costs up to a millisecond a file in the minutes
after many files were removed (bench/retired.py: every tree here is set aside, not removed,
until the end). So, in alternation on the same disk, medians of --runs:
- floor: the same RUN script run by the base image's own busybox `sh` in a chroot of a plain
  copy of the base rootfs (no tool around it);
- overlay (ours): the same, with the root an overlay mounted with the options our sandbox
  uses (metacopy=off, redirect_dir=off), the upper dir on the same disk;
- overlay (docker's overlay2): the options docker 20.10's overlay2 driver uses (index=off);
- builder cold: the whole cold build (`builder build`, start-up included), and its RUN step
  alone as the build log reports it.
Our overhead = builder cold - floor; the overlays show whether our mount options or the
upper dir's placement make file creation slower than docker's overlay2 on the same disk.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/run.py: this script's dir is on sys.path
import installed
from retired import retire
from run import NETWORK, SHARED, _command, base_store

WORKLOAD = "big-rootfs-small-change"
OURS = "metacopy=off,redirect_dir=off"
DOCKER = "index=off"


def run_script(recipe: Path = SHARED / WORKLOAD / "Dockerfile") -> str:
    """The recipe's first RUN (the 50,000 files), as its shell gets it."""
    for line in recipe.read_text(encoding="utf-8").splitlines():
        if line.startswith("RUN "):
            return line.removeprefix("RUN ")
    raise SystemExit(f"{recipe}: no RUN line")


def _timed(args: list[str]) -> float:
    subprocess.run(["sync"], check=True)  # untimed: earlier runs' writeback is not ours
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def floor(rootfs: Path, scratch: Path, script: str) -> float:
    root = scratch / "plain"
    shutil.copytree(rootfs, root, symlinks=True)
    try:
        return _timed(["chroot", str(root), "/bin/sh", "-c", script])
    finally:
        retire(root, scratch)


def overlay(rootfs: Path, scratch: Path, script: str, options: str) -> float:
    upper, work, merged = (scratch / n for n in ("upper", "work", "merged"))
    for path in (upper, work, merged):
        path.mkdir()
    data = f"lowerdir={rootfs},upperdir={upper},workdir={work},{options}"
    # A private mount namespace: the overlay goes away with the shell, as the sandbox's does.
    inner = 'mount -t overlay overlay -o "$1" "$2" && exec chroot "$2" /bin/sh -c "$3"'
    try:
        return _timed(["unshare", "-m", "sh", "-c", inner, "sh", data, str(merged), script])
    finally:
        for path in (upper, work, merged):
            retire(path, scratch)


def ours(store_base: Path, scratch: Path, context: Path) -> tuple[float, float]:
    """The cold build's wall time and its first RUN step's time from the build log."""
    store = scratch / "store"
    shutil.copytree(store_base, store, symlinks=True)
    recipe = SHARED / WORKLOAD / "Dockerfile"
    args = ["build", *NETWORK, "-f", recipe, "--build-arg", "BASE=busybox:latest", context]
    try:
        subprocess.run(["sync"], check=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            _command(store, *args),
            capture_output=True,
            text=True,
            check=True,
            env=installed.environment(),
        )
        wall = time.perf_counter() - t0
    finally:
        retire(store, scratch)
    step = re.search(r"^\[2/\d+\] DONE ([\d.]+)s$", proc.stderr, re.MULTILINE)
    if step is None:
        raise SystemExit(f"no RUN step time in the build log:\n{proc.stderr}")
    return wall, float(step.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=4)  # each contender in each position once
    options = parser.parse_args()
    script = run_script()
    cells: dict[str, list[float]] = {
        "floor: sh in a chroot": [],
        f"overlay, ours ({OURS})": [],
        f"overlay, docker overlay2 ({DOCKER})": [],
        "builder: the RUN step (log)": [],
        "builder: cold build": [],
    }
    names = list(cells)
    with tempfile.TemporaryDirectory(prefix="builder-floor-") as tmp:
        work = Path(tmp)
        store_base = base_store(work)
        rootfs = work / "rootfs"  # base_store made it: the base image's own files
        context = work / "ctx"
        shutil.copytree(SHARED / WORKLOAD / "context", context)

        def builder_cold() -> None:
            wall, step = ours(store_base, work, context)
            cells[names[3]].append(step)
            cells[names[4]].append(wall)

        contenders = [
            lambda: cells[names[0]].append(floor(rootfs, work, script)),
            lambda: cells[names[1]].append(overlay(rootfs, work, script, OURS)),
            lambda: cells[names[2]].append(overlay(rootfs, work, script, DOCKER)),
            builder_cold,
        ]
        for i in range(options.runs):
            # The order rotates: removing 50,000 files leaves this disk slow for a while
            # (online discard), and that must not always weigh on the same contender.
            for contender in contenders[i % 4 :] + contenders[: i % 4]:
                contender()
            # A round takes minutes: show it as it comes, in case the run is cut short.
            done = ", ".join(
                f"{name.split(':')[0]} {values[-1]:.2f}" for name, values in cells.items()
            )
            print(f"round {i + 1}: {done}", flush=True)
    medians = {name: statistics.median(values) for name, values in cells.items()}
    base = medians[names[0]]
    print(f"{WORKLOAD} cold, medians of {options.runs}, interleaved, order rotating (seconds)")
    for name, value in medians.items():
        print(f"  {name:<48} {value:7.2f}  {value / base:5.2f} x floor")
    print(f"  {'our overhead beyond the floor (cold - floor)':<48} {medians[names[4]] - base:7.2f}")


if __name__ == "__main__":
    sys.exit(main())
