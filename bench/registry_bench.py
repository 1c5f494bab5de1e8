"""Registry speed: `builder push` and `builder pull` of a ~200 MB image against `skopeo copy`
of the same image, in the same run, to a real docker-registry on loopback.

    .venv/bin/python bench/registry_bench.py [--runs N] [--compression gzip zstd] [--keep DIR]

The image: `builder import` of a generated rootfs (270 MB: 170 MB random, 100 MB text-like,
so its one layer compresses to about 200 MB), once per compression (gzip and zstd: neither
tool recompresses, so the two differ only in the bytes the registry hashes).

Each cell is the wall time of the real CLI, start-up included, median of N runs:
- push: ours `builder push NAME ADDR/REPO` from the store; skopeo
  `skopeo copy oci:STORE/layout:NAME docker://ADDR/REPO` from the same store's OCI layout;
- pull: ours `builder pull ADDR/REPO` into a fresh store; skopeo
  `skopeo copy docker://ADDR/REPO oci:DIR:latest` into a fresh OCI dir.
Each tool pushes to a registry of its own, started fresh for each run (empty storage), so
no blob is already there and none can be mounted from another repository: every push sends
every byte. The two tools alternate which goes first. Printed: seconds and ours / skopeo
(the goal: <= 1.00).

`--baseline TREE` adds a third tool, `builder` imported from another checkout (e.g. the main
branch), run interleaved with the other two: on a shared machine, whose load swings, the
ratio of runs taken side by side is the figure to trust, not a time from another hour.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' registry starter: one place knows its config

from bench.trees import OUTSIDE, compiled_copy  # noqa: E402
from tests.registry.registries import RegistryProcess, start_registry  # noqa: E402

RANDOM_MB = 170
TEXT_MB = 100
FILES = 10


def make_rootfs(root: Path) -> None:
    """Ten files, each random bytes then text-like words: what a layer of binaries and
    sources looks like to a compressor."""
    root.mkdir(parents=True)
    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghijklmnop", k=8)) for _ in range(4096)]
    for i in range(FILES):
        text = b" ".join(rng.choices(words, k=(TEXT_MB << 20) // FILES // 9))
        (root / f"data{i:02d}").write_bytes(os.urandom((RANDOM_MB << 20) // FILES) + text)


def _run(args: Sequence[str | Path], env: dict[str, str]) -> float:
    os.sync()  # untimed: write back what the last step left dirty
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(map(str, args)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=OUTSIDE,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{proc.stderr.decode()}")
    return elapsed


def _builder(root: Path, *args: str | Path) -> list[str | Path]:
    return [sys.executable, "-m", "builder", "--root", root, *args]


def _mounted(registry: RegistryProcess) -> bool:
    """Whether any blob was mounted from another repository (the push would not be fair)."""
    log = registry.log.read_text(errors="replace")
    return any("mount=" in line and "status=201" in line for line in log.splitlines())


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.store = work / "store"
        config = work / "builder.toml"
        config.write_text("")
        (work / "docker").mkdir()
        # Neither tool reads the user's credentials or settings: both go anonymous.
        self.env = {
            **os.environ,
            "BUILDER_CONFIG": str(config),
            "DOCKER_CONFIG": str(work / "docker"),
            "REGISTRY_AUTH_FILE": str(work / "docker" / "auth.json"),
        }
        self._serial = 0

    def image(self, compression: str) -> tuple[str, int]:
        """NAME of the image in that compression, and its layer blob's size."""
        rootfs = self.work / "rootfs"
        if not rootfs.exists():
            make_rootfs(rootfs)
        name = f"bench-{compression}:latest"
        _run(_builder(self.store, "import", "--compression", compression, rootfs, name), self.env)
        inspect = subprocess.run(
            _builder(self.store, "inspect", name),
            capture_output=True,
            env=self.env,
            check=True,
            cwd=OUTSIDE,
        )
        manifest = json.loads(inspect.stdout)[0]["Manifest"]
        size = sum(layer["size"] for layer in manifest["layers"])
        return name, size

    def _fresh(self, what: str) -> Path:
        self._serial += 1
        path = self.work / f"{what}-{self._serial}"
        path.mkdir()
        return path

    def ours(self, name: str, tree: Path = REPO) -> tuple[float, float]:
        env = {**self.env, "PYTHONPATH": str(tree)}
        registry = start_registry(self._fresh("registry"))
        try:
            ref = f"{registry.address}/ours/{self._serial}:latest"
            push = _run(_builder(self.store, "push", "-q", name, ref), env)
            pulled = self.work / f"pulled-{self._serial}"
            pull = _run(_builder(pulled, "pull", "-q", ref), env)
            if _mounted(registry):
                raise SystemExit("builder push mounted a blob: the measure is not fair")
        finally:
            registry.stop()
        shutil.rmtree(registry.directory)
        shutil.rmtree(pulled, ignore_errors=True)
        return push, pull

    def skopeo(self, name: str) -> tuple[float, float]:
        registry = start_registry(self._fresh("registry"))
        try:
            ref = f"docker://{registry.address}/skopeo/{self._serial}:latest"
            layout = f"oci:{self.store / 'layout'}:{name}"
            copy = ["skopeo", "copy", "-q"]
            push = _run([*copy, "--dest-tls-verify=false", layout, ref], self.env)
            pulled = self.work / f"pulled-{self._serial}"
            pull = _run([*copy, "--src-tls-verify=false", ref, f"oci:{pulled}:latest"], self.env)
            if _mounted(registry):
                raise SystemExit("skopeo mounted a blob: the measure is not fair")
        finally:
            registry.stop()
        shutil.rmtree(registry.directory)
        shutil.rmtree(pulled, ignore_errors=True)
        return push, pull


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compression", nargs="*", default=["zstd", "gzip"])
    parser.add_argument("--keep", type=Path, help="work in DIR and leave it (to profile)")
    parser.add_argument("--baseline", type=Path, help="also time builder from this checkout")
    options = parser.parse_args()
    if shutil.which("skopeo") is None or shutil.which("docker-registry") is None:
        print("registry bench skipped: skopeo and docker-registry are needed (make setup)")
        return
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        work = (options.keep or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        bench = Bench(work)
        rows = []
        for compression in options.compression:
            name, size = bench.image(compression)
            tools: dict[str, Callable[[], tuple[float, float]]] = {
                "ours": functools.partial(bench.ours, name),
                "skopeo": functools.partial(bench.skopeo, name),
            }
            if options.baseline is not None:
                baseline = compiled_copy(options.baseline.resolve(), work)
                tools["baseline"] = functools.partial(bench.ours, name, baseline)
            times: dict[str, list[tuple[float, float]]] = {tool: [] for tool in tools}
            for i in range(options.runs):
                order = list(tools) if i % 2 == 0 else list(reversed(tools))
                for tool in order:
                    times[tool].append(tools[tool]())
            for j, direction in enumerate(("push", "pull")):
                medians = {t: statistics.median(run[j] for run in times[t]) for t in tools}
                rows.append((compression, size, direction, medians))
    print(f"registry push/pull, one-layer image, medians of {options.runs}")
    extra = f" {'baseline':>8} {'ours/base':>9}" if options.baseline else ""
    print(f"{'layer':<16} {'direction':<9} {'builder':>8} {'skopeo':>8} {'ratio':>6}{extra}")
    for compression, size, direction, m in rows:
        layer = f"{compression} {size / 1e6:.0f} MB"
        line = f"{layer:<16} {direction:<9} {m['ours']:8.2f} {m['skopeo']:8.2f}"
        line += f" {m['ours'] / m['skopeo']:6.2f}"
        if "baseline" in m:
            line += f" {m['baseline']:8.2f} {m['ours'] / m['baseline']:9.2f}"
        print(line)


if __name__ == "__main__":
    main()
