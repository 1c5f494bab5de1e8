#!/usr/bin/env python3
"""`make bench`: the four workloads of ../shared/bench, cold / cached / changed, medians.

Each cell is the wall time of the real CLI (`builder build --network none`, as the peers ran;
start-up included), the console script of this checkout's wheel installed into a venv of its
own (bench/installed.py), as the issue's figures were taken:
- cold: a fresh store holding only the busybox base image;
- cached: the same build again, nothing changed;
- changed: after appending a line to the context's changeme.txt.
Peers' figures (docker build, buildah, ch-image on this machine class, read from
../shared/bench/README.md) are printed beside ours, with the ratio to the best peer (target:
<= 0.5); docker build is also measured live in the same run (bench/docker_peer.py) when its
daemon can be started (--no-docker leaves it out). Then the cost of SOURCE_DATE_EPOCH: the same
workload cold and cached with and without it, in alternation, as a ratio (target: 1.00, no
measurable cost). Then the CI scenario of a shared build cache on big-context: a cold
build, the same cold build exporting its cache (--cache-to type=local), and a build in a
fresh store importing it (--cache-from), which fetches only the image's layers. Then the
component benchmarks (parser, layer writer, sandbox start, registry push/pull, independent
stages built at once) run, each measuring itself against a reference in the same run, and the
start-up comparison (bench/startup_bench.py: `builder run` against runc, crun and docker,
medians of 20).

Only the SOURCE_DATE_EPOCH part:  bench/run.py --only --no-components --cache-runs 0
Only the shared cache part:       bench/run.py --only --no-components --epoch-runs 0
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import installed  # bench/ is on sys.path (as the script's own dir)
from docker_peer import DockerPeer
from retired import retire

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "bench"
sys.path.insert(0, str(REPO / "bench"))
WORKLOADS = ("tiny", "many-steps", "big-context", "big-rootfs-small-change")
Cells = tuple[float, float, float]  # cold, cached, changed (seconds)


def readme_peers(readme: Path = SHARED / "README.md") -> dict[str, dict[str, Cells]]:
    """The peers' table of ../shared/bench/README.md: workload -> peer -> cells. A peer is
    named by its column's first word (docker, buildah, ch-image)."""
    peers: dict[str, dict[str, Cells]] = {}
    names: list[str] = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "recipe":
            names = [c.split()[0] for c in cells[1:] if c]
        elif names and cells[0] in WORKLOADS:
            figures = [re.findall(r"\d+(?:\.\d+)?", c) for c in cells[1 : 1 + len(names)]]
            peers[cells[0]] = {
                n: (float(f[0]), float(f[1]), float(f[2]))
                for n, f in zip(names, figures, strict=True)
                if len(f) == 3
            }
    return peers


BASE = "busybox:latest"  # the workloads' FROM $BASE: ours, and docker's loaded from ours
# Like for like: the peers' figures and the live docker build run their RUN steps with
# `--network none` (issue 9, ../shared/bench/README.md), so ours do too. Our default, a
# private network per RUN (slirp4netns), costs more: bench/startup_bench.py shows it.
NETWORK = ("--network", "none")
EPOCH_WORKLOAD = "many-steps"  # 16 layers, each one clamped: the most clamping per second
EPOCH = "1700000000"


def _command(root: Path, *args: str | Path) -> list[str]:
    return installed.command(root, *args)


def _builder(root: Path, *args: str | Path, env: dict[str, str] | None = None) -> float:
    # Untimed: write back what earlier runs left dirty, or one cell pays for another's
    # writeback (a cold 50,000-file build measured 40 s instead of 10 s after big-context).
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.run(
        _command(root, *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or installed.environment(),
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"builder {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return elapsed


def base_store(work: Path, name: str = "base-store", *import_flags: str) -> Path:
    """A store at work/name holding only the busybox base image (made from the host's
    busybox-static), imported with `import_flags`."""
    rootfs = work / "rootfs"
    if not rootfs.exists():
        path = REPO / "scripts" / "busybox_rootfs.py"
        spec = importlib.util.spec_from_file_location("bb", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.make_rootfs(rootfs)
    store = work / name
    _builder(store, "import", *import_flags, rootfs, BASE)
    return store


def _context(name: str, work: Path) -> Path:
    dest = work / f"ctx-{name}"
    if name == "big-context":
        if not dest.exists():
            subprocess.run(
                [sys.executable, str(SHARED / name / "gen_context.py"), str(dest)], check=True
            )
    else:
        shutil.copytree(SHARED / name / "context", dest, dirs_exist_ok=True)
        for path in dest.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        dest.chmod(0o755)
    return dest


def measure(
    name: str, work: Path, base: Path, runs: int, env: dict[str, str] | None = None
) -> tuple[float, float, float]:
    recipe = SHARED / name / "Dockerfile"
    context = _context(name, work)
    original = (context / "changeme.txt").read_bytes()
    cold, cached, changed = [], [], []
    for i in range(runs):
        store = work / f"store-{name}-{i}"
        shutil.copytree(base, store, symlinks=True)
        (context / "changeme.txt").write_bytes(original)
        args = ("build", *NETWORK, "-f", recipe, "--build-arg", f"BASE={BASE}", "-t", name, context)
        cold.append(_builder(store, *args, env=env))
        cached.append(_builder(store, *args, env=env))
        with open(context / "changeme.txt", "a") as f:
            f.write(f"change {i}\n")
        changed.append(_builder(store, *args, env=env))
        retire(store, work)
    (context / "changeme.txt").write_bytes(original)
    return statistics.median(cold), statistics.median(cached), statistics.median(changed)


def measure_docker(name: str, work: Path, docker: DockerPeer, runs: int) -> Cells:
    """measure()'s cells for docker build (its cache pruned and the image removed before
    each cold build)."""
    recipe = SHARED / name / "Dockerfile"
    context = _context(name, work)
    original = (context / "changeme.txt").read_bytes()
    cold, cached, changed = [], [], []
    for i in range(runs):
        (context / "changeme.txt").write_bytes(original)
        docker.clear(name)
        cold.append(docker.build(recipe, context, name, BASE))
        cached.append(docker.build(recipe, context, name, BASE))
        with open(context / "changeme.txt", "a") as f:
            f.write(f"change {i}\n")
        changed.append(docker.build(recipe, context, name, BASE))
    (context / "changeme.txt").write_bytes(original)
    docker.clear(name)
    return statistics.median(cold), statistics.median(cached), statistics.median(changed)


def print_builds(name: str, ours: Cells, live: Cells | None, peers: dict[str, Cells]) -> None:
    """One line per cell: ours, docker in this run (if measured) and the ratio to it, the
    best peer of the README's table (its name) and the ratio to it (target: <= 0.5)."""
    for i, cell in enumerate(("cold", "cached", "changed")):
        docker = f"{live[i]:8.2f} {ours[i] / live[i]:6.2f}" if live else f"{'-':>8} {'-':>6}"
        best = min(peers.items(), key=lambda item: item[1][i], default=None)
        readme = f"{best[1][i]:6.2f} {best[0]:<9} {ours[i] / best[1][i]:6.2f}" if best else "-"
        print(f"{name:<25} {cell:<8} {ours[i]:8.2f} {docker}  {readme}")


def print_served(
    work: Path, base: Path, names: list[str], runs: int, peers: dict[str, dict[str, Cells]]
) -> None:
    """The same cells through a warm `builder server` (bench/server_mode.py): the console
    script as a thin client, the build in a fork of a process that imported everything."""
    from server_mode import warm_server

    print(f"\nWith a warm server (BUILDER_SERVER=auto), medians of {runs}")
    with warm_server() as env:
        for name in names:
            print_builds(name, measure(name, work, base, runs, env), None, peers.get(name, {}))


def measure_epoch(work: Path, base: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Cold and cached medians of EPOCH_WORKLOAD without and with SOURCE_DATE_EPOCH.

    The two alternate within each run (and swap which goes first), so a machine that gets
    busier or quieter during the measurement weighs on both alike.
    """
    recipe = SHARED / EPOCH_WORKLOAD / "Dockerfile"
    context = _context(EPOCH_WORKLOAD, work)
    plain = {k: v for k, v in installed.environment().items() if k != "SOURCE_DATE_EPOCH"}
    envs = {"without": plain, "with": {**plain, "SOURCE_DATE_EPOCH": EPOCH}}
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in envs}
    args = ("build", "-f", recipe, "--build-arg", "BASE=busybox:latest", context)
    for i in range(runs):
        order = list(envs) if i % 2 == 0 else list(reversed(envs))
        for label in order:
            store = work / f"store-epoch-{label}-{i}"
            shutil.copytree(base, store, symlinks=True)
            times[label][0].append(_builder(store, *args, env=envs[label]))
            times[label][1].append(_builder(store, *args, env=envs[label]))
            retire(store, work)
    return {k: (statistics.median(c), statistics.median(h)) for k, (c, h) in times.items()}


CACHE_WORKLOAD = "big-context"


def measure_shared_cache(work: Path, base: Path, runs: int) -> dict[str, float]:
    """Medians of: a cold build; a cold build with --cache-to; the build in a fresh store
    (the base only, as a CI runner's pull gives it) with --cache-from. The cache is a
    directory (type=local): a registry's transfer time is push/pull's bench."""
    recipe = SHARED / CACHE_WORKLOAD / "Dockerfile"
    context = _context(CACHE_WORKLOAD, work)
    args = ("build", "-f", recipe, "--build-arg", "BASE=busybox:latest", "-t", "app", context)
    times: dict[str, list[float]] = {"cold": [], "cold + cache-to": [], "fresh + cache-from": []}
    for i in range(runs):
        cache = work / f"cache-{i}"
        store = work / f"store-cache-{i}"
        shutil.copytree(base, store, symlinks=True)
        times["cold"].append(_builder(store, *args))
        retire(store, work)
        shutil.copytree(base, store, symlinks=True)
        to = f"type=local,dest={cache},mode=max"
        times["cold + cache-to"].append(_builder(store, *args, "--cache-to", to))
        retire(store, work)  # the CI runner is gone; a fresh one starts
        shutil.copytree(base, store, symlinks=True)
        imported = _builder(store, *args, "--cache-from", f"type=local,src={cache}")
        times["fresh + cache-from"].append(imported)
        retire(store, work)
        retire(cache, work)
    return {cell: statistics.median(values) for cell, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--no-components", action="store_true")
    parser.add_argument("--epoch-runs", type=int, default=5)
    parser.add_argument("--cache-runs", type=int, default=3)
    parser.add_argument("--startup-runs", type=int, default=20, help="0: no start-up table")
    parser.add_argument("--no-docker", action="store_true", help="No live docker peer.")
    parser.add_argument(
        "--server-only",
        nargs="*",
        default=list(WORKLOADS),
        help="Workloads measured again through a warm `builder server` (none: no table).",
    )
    options = parser.parse_args()
    peers = readme_peers()
    with tempfile.TemporaryDirectory(prefix="builder-bench-") as tmp:
        work = Path(tmp)
        base = base_store(work)
        docker = None if options.no_docker else DockerPeer.start()
        try:
            if docker is not None:
                docker.load(_command(base, "save", "--format", "docker", "-o", "-", BASE))
            if options.startup_runs > 0:
                import startup_bench

                startup_bench.run(work, options.startup_runs, docker)
                print()
            print(
                f"{'recipe':<25} {'cell':<8} {'builder':>8} {'docker':>8} {'ratio':>6}"
                f"  {'README best peer':<16} {'ratio':>6}"
            )
            for name in options.only:
                ours = measure(name, work, base, options.runs)
                live = measure_docker(name, work, docker, options.runs) if docker else None
                print_builds(name, ours, live, peers.get(name, {}))
        finally:
            if docker is not None:
                docker.stop()
        if options.server_only:
            print_served(work, base, options.server_only, options.runs, peers)
        if options.epoch_runs > 0:
            epoch = measure_epoch(work, base, options.epoch_runs)
            print(f"\nSOURCE_DATE_EPOCH cost, {EPOCH_WORKLOAD}, medians of {options.epoch_runs}")
            print(f"{'cell':<8} {'without':>8} {'with':>8} {'ratio':>6}")
            for i, cell in enumerate(("cold", "cached")):
                without, with_ = epoch["without"][i], epoch["with"][i]
                print(f"{cell:<8} {without:8.2f} {with_:8.2f} {with_ / without:6.2f}")
        if options.cache_runs > 0:
            shared = measure_shared_cache(work, base, options.cache_runs)
            print(f"\nShared cache, CI scenario, {CACHE_WORKLOAD}, medians of {options.cache_runs}")
            for cell, value in shared.items():
                ratio = value / shared["cold"]
                print(f"{cell:<20} {value:8.2f} s  {ratio:5.2f} x cold")
        if not options.no_components:
            # Inside the work dir's life: its retired trees are removed only at the end
            # (bench/retired.py), not just before floor_bench's file creation.
            run_components()


def run_components() -> None:
    for script in (
        "parse_bench.py",
        "layer_bench.py",
        "sandbox_bench.py",
        "registry_bench.py",
        "parallel_bench.py",
        "floor_bench.py",
        "imports_bench.py",
    ):
        path = REPO / "bench" / script
        if path.exists():
            print(f"\n== {script}", flush=True)
            subprocess.run([sys.executable, str(path)], check=False)


if __name__ == "__main__":
    main()
