"""Independent stages built at once: `build --jobs N` against `--jobs 1`, cold, in the same run.

    .venv/bin/python bench/parallel_bench.py [runs] [jobs]

The workload is bench/parallel-stages (three independent stages, then one copying from
all three). Each run builds it in a fresh store holding only busybox, once with --jobs 1
and once with --jobs N (default: the CPU count), alternating which goes first so that a
machine getting busier weighs on both alike. Medians of the wall time of the real CLI, and
the speedup (--jobs 1 / --jobs N).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from run import _builder, base_store  # bench/run.py: this script's dir is on sys.path

RECIPE = Path(__file__).resolve().parent / "parallel-stages" / "Dockerfile"


def measure(work: Path, base: Path, runs: int, jobs: int) -> dict[int, float]:
    context = work / "ctx-parallel"
    context.mkdir(exist_ok=True)
    times: dict[int, list[float]] = {1: [], jobs: []}
    for i in range(runs):
        order = [1, jobs] if i % 2 == 0 else [jobs, 1]
        for n in order:
            store = work / f"store-parallel-{n}-{i}"
            shutil.copytree(base, store, symlinks=True)
            args = ("build", "-f", RECIPE, "--build-arg", "BASE=busybox:latest", context)
            times[n].append(_builder(store, *args, "--jobs", str(n)))
            shutil.rmtree(store)
    return {n: statistics.median(values) for n, values in times.items()}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else max(os.cpu_count() or 1, 2)
    with tempfile.TemporaryDirectory(prefix="builder-bench-") as tmp:
        work = Path(tmp)
        medians = measure(work, base_store(work), runs, jobs)
    print(f"parallel-stages, cold, medians of {runs}")
    print(f"--jobs 1  {medians[1]:6.2f} s")
    print(f"--jobs {jobs}  {medians[jobs]:6.2f} s")
    print(f"speedup   {medians[1] / medians[jobs]:6.2f} x")


if __name__ == "__main__":
    main()
