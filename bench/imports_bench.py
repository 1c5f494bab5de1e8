#!/usr/bin/env python3
"""Start-up: what a one-shot `builder` process imports and how long its short commands take.

    .venv/bin/python bench/imports_bench.py [--runs N] [--baseline TREE] [--top N] [--no-imports]

Three commands whose work is a few milliseconds, so their time is start-up:
- cached: `builder build` of ../shared/bench/tiny, every step cached;
- push:   `builder push` of that image to a docker-registry on loopback (a new repository
          each time; the blobs are mounted or already there), beside `skopeo copy` of it;
- run:    `builder run --rm busybox /bin/true`.

First, each command once under `python -X importtime`: the modules by cumulative time, the
total, and which of the heavy ones (lark, tqdm, zstandard, urllib3, ssl, ...) it imported.
Then each command N times (median), interleaved with `--baseline TREE` (builder imported
from another checkout, e.g. the main branch) so a busy machine weighs on both alike, and
the floor of any Python process: `python -c pass`, with -S, and with -I -S, and of a click
command line: `python -c 'import click'`.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "bench"
sys.path.insert(0, str(REPO))  # the tests' registry starter: one place knows its config

from bench.trees import OUTSIDE, compiled_copy  # noqa: E402
from tests.registry.registries import RegistryProcess, start_registry  # noqa: E402

HEAVY = ("lark", "tqdm", "zstandard", "urllib3", "ssl", "http.client", "json", "dataclasses")


def _timed(args: Sequence[str | Path], env: dict[str, str]) -> tuple[float, float]:
    """Wall time, and CPU time (user + system) of the process and its children: on a busy
    machine the CPU time is the steadier figure of the two."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(map(str, args)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=OUTSIDE,
    )
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{proc.stderr.decode()}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


class Setup:
    """A store holding busybox and the tiny image, and a registry to push to."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.store = work / "store"
        config = work / "builder.toml"
        config.write_text("")
        (work / "docker").mkdir()
        self.env = {
            **os.environ,
            "BUILDER_CONFIG": str(config),
            "DOCKER_CONFIG": str(work / "docker"),
            "REGISTRY_AUTH_FILE": str(work / "docker" / "auth.json"),
            "PYTHONPATH": str(REPO),
        }
        spec = importlib.util.spec_from_file_location("bb", REPO / "scripts" / "busybox_rootfs.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rootfs = module.make_rootfs(work / "rootfs")
        self.context = work / "context"
        shutil.copytree(SHARED / "tiny" / "context", self.context)
        _timed(self.builder("import", rootfs, "busybox:latest"), self.env)
        _timed(
            self.builder(*self.build_args(), self.context), self.env
        )  # cold: every later one is cached
        (work / "registry").mkdir()
        self.registry: RegistryProcess = start_registry(work / "registry")
        self._serial = 0

    def builder(
        self, *args: str | Path, flags: Sequence[str] = (), store: Path | None = None
    ) -> list[str | Path]:
        return [sys.executable, *flags, "-m", "builder", "--root", store or self.store, *args]

    def store_for(self, name: str, tree: Path) -> Path:
        """A copy of the store for the checkout TREE, its build cached by that tree: the
        parsed recipe is kept per parser, so two trees sharing a store would each find the
        other's and parse again, every time."""
        store = self.work / f"store-{name}"
        if not store.exists():
            shutil.copytree(self.store, store, symlinks=True)
            env = {**self.env, "PYTHONPATH": str(tree)}
            _timed(self.builder(*self.build_args(), self.context, store=store), env)
        return store

    def build_args(self) -> list[str | Path]:
        recipe = SHARED / "tiny" / "Dockerfile"
        return ["build", "-q", "-f", recipe, "--build-arg", "BASE=busybox:latest", "-t", "tiny"]

    def commands(
        self, flags: Sequence[str] = (), store: Path | None = None
    ) -> dict[str, list[str | Path]]:
        self._serial += 1
        ref = f"{self.registry.address}/tiny{self._serial}:latest"
        return {
            "cached": self.builder(*self.build_args(), self.context, flags=flags, store=store),
            "push": self.builder("push", "-q", "tiny", ref, flags=flags, store=store),
            "run": self.builder("run", "--rm", "busybox", "/bin/true", flags=flags, store=store),
        }

    def skopeo_push(self) -> list[str | Path]:
        self._serial += 1
        ref = f"docker://{self.registry.address}/skopeo{self._serial}:latest"
        layout = f"oci:{self.store / 'layout'}:tiny:latest"
        return ["skopeo", "copy", "-q", "--dest-tls-verify=false", layout, ref]


def import_table(setup: Setup, top: int, runs: int = 5) -> None:
    """Each module's least self and cumulative time over RUNS runs: on a busy machine one
    run's figures are mostly the other processes'."""
    for name in ("cached", "push", "run"):
        # module -> (cumulative, self, how it was indented). A module imported on a thread
        # (urllib3, by a push's first request) can show odd figures: importtime does not
        # tell threads apart.
        best: dict[str, tuple[int, int, str]] = {}
        for _ in range(runs):
            args = setup.commands(["-X", "importtime"])[name]
            proc = subprocess.run(
                list(map(str, args)),
                capture_output=True,
                text=True,
                env=setup.env,
                check=True,
                cwd=OUTSIDE,
            )
            for line in proc.stderr.splitlines():
                if not line.startswith("import time:") or "cumulative" in line:
                    continue
                self_us, cumulative_us, module = line.split(":", 1)[1].split("|")
                key = module.strip()
                was = best.get(key, (1 << 62, 1 << 62, module.rstrip()))
                best[key] = (min(was[0], int(cumulative_us)), min(was[1], int(self_us)), was[2])
        total = sum(c for c, _, m in best.values() if not m[1:].startswith(" "))  # top level
        names = set(best)
        heavy = [h for h in HEAVY if h in names]
        print(f"\n== {name}: {len(names)} modules, {total / 1000:.0f} ms of imports")
        print(f"   (python -X importtime, each module's least of {runs} runs)")
        print(f"   heavy modules imported: {', '.join(heavy) or 'none'}")
        print(f"   {'cumulative':>10} {'self':>7}  module")
        rows = sorted(best.values(), reverse=True)
        for cumulative, self_us, module in rows[:top]:
            print(f"   {cumulative / 1000:8.1f}ms {self_us / 1000:5.1f}ms  {module}")


def timings(setup: Setup, runs: int, baseline: Path | None) -> None:
    trees = {"ours": REPO} | ({"baseline": baseline} if baseline else {})
    stores = {name: setup.store_for(name, tree) for name, tree in trees.items()}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    floors = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -S -c pass": [sys.executable, "-S", "-c", "pass"],
        "python -I -S -c pass": [sys.executable, "-I", "-S", "-c", "pass"],
        "python -c 'import click'": [sys.executable, "-c", "import click"],  # the CLI's floor
    }
    skopeo = shutil.which("skopeo") is not None
    for i in range(runs):
        order = list(trees) if i % 2 == 0 else list(reversed(trees))
        for tree in order:
            env = {**setup.env, "PYTHONPATH": str(trees[tree])}
            for name, args in setup.commands(store=stores[tree]).items():
                times.setdefault((name, tree), []).append(_timed(args, env))
        if skopeo:
            times.setdefault(("push", "skopeo"), []).append(_timed(setup.skopeo_push(), setup.env))
        for name, args in floors.items():
            times.setdefault((name, "-"), []).append(_timed(args, setup.env))
    columns = [*trees, "skopeo"] if skopeo else list(trees)
    for k, what in enumerate(("wall", "CPU (user + system)")):
        print(f"\nstart-up, {what}, medians of {runs} (seconds)")
        print(f"{'command':<22}" + "".join(f"{c:>10}" for c in columns) + "  ours/base")
        for name in ("cached", "push", "run"):
            medians = {
                c: statistics.median(t[k] for t in times[(name, c)])
                for c in columns
                if (name, c) in times
            }
            line = f"{name:<22}" + "".join(
                f"{medians[c]:10.3f}" if c in medians else f"{'':>10}" for c in columns
            )
            if "baseline" in medians:
                line += f"  {medians['ours'] / medians['baseline']:9.2f}"
            print(line)
        for name in floors:
            print(f"{name:<26}{statistics.median(t[k] for t in times[(name, '-')]):6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--baseline", type=Path, help="also time builder from this checkout")
    parser.add_argument("--no-imports", action="store_true", help="timings only")
    parser.add_argument("--keep", type=Path, help="work in DIR and leave it")
    options = parser.parse_args()
    if shutil.which("docker-registry") is None:
        raise SystemExit("docker-registry is needed (make setup)")
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        work = (options.keep or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        compileall.compile_dir(REPO / "builder", quiet=1)  # as `make bench` does
        setup = Setup(work)
        try:
            if not options.no_imports:
                import_table(setup, options.top)
            if options.runs > 0:
                baseline = (
                    compiled_copy(options.baseline.resolve(), work) if options.baseline else None
                )
                timings(setup, options.runs, baseline)
        finally:
            setup.registry.stop()


if __name__ == "__main__":
    main()
