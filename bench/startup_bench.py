#!/usr/bin/env python3
"""Container start-up through each tool's real CLI: `/bin/true` in the same busybox image.

    .venv/bin/python bench/startup_bench.py [--runs 20] [--no-docker]

- ours: `builder run --rm busybox /bin/true`, with `--network none` and with the default
  network (a private one: slirp4netns);
- runc and crun: `runc run` / `crun run` of the same image as a bundle (`builder save` to
  an OCI layout, `umoci unpack`, as ../shared/tools/oci-oracles.sh makes it): its network
  is a namespace with loopback only, like our `--network none`;
- docker (when bench/docker_peer.py can start its dockerd): `docker run --rm --network none`
  of the same image, loaded from `builder save --format docker` (its default bridge is
  off in that daemon).

The runs are interleaved (one of each per round, the order rotating), so a machine that
gets busier or quieter weighs on all alike; medians of `--runs`. Ratios are ours over the
peer in the same run, then over the peers' figures in ../shared/bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from docker_peer import DockerPeer  # noqa: E402 - bench/ is not a package

README = REPO.parent / "shared" / "bench" / "README.md"
IMAGE = "busybox:latest"


def builder_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "builder", "--root", str(root), *args]


def readme_figures(readme: Path = README) -> dict[str, tuple[float, float]]:
    """The start-up ranges in the README's "Container start" line: runtime -> (low, high) ms."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return {}
    return {
        name: (float(low), float(high))
        for name, low, high in re.findall(r"\b(runc|crun) (\d+)[–-](\d+) ms", text)
    }


def make_bundle(root: Path, work: Path) -> Path:
    """The image as an OCI bundle, the way oci-oracles.sh makes one: umoci's config with
    terminal off and args /bin/true."""
    layout = work / "layout"
    layout.mkdir()
    save = subprocess.Popen(builder_cmd(root, "save", "-o", "-", IMAGE), stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(layout)], stdin=save.stdout, check=True)
    if save.wait() != 0:
        raise SystemExit("builder save failed")
    bundle = work / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{IMAGE.split(':')[1]}", str(bundle)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config_path.write_text(json.dumps(config))
    return bundle


def ensure_hugetlb_v1() -> None:
    """crun refuses hybrid cgroups until a v1 hugetlb hierarchy exists (the Makefile's
    `cgroups` target does the same)."""
    if Path("/sys/fs/cgroup/unified").is_dir() and not Path("/sys/fs/cgroup/hugetlb").is_dir():
        os.makedirs("/sys/fs/cgroup/hugetlb", exist_ok=True)
        subprocess.run(
            ["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", "/sys/fs/cgroup/hugetlb"],
            check=False,
        )


def timed(argv: Sequence[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr}")
    return elapsed


def contenders(
    root: Path, bundle: Path, docker: DockerPeer | None
) -> dict[str, Callable[[int], float]]:
    ours = builder_cmd(root, "run", "--rm")
    found: dict[str, Callable[[int], float]] = {
        "builder --network none": lambda i: timed([*ours, "--network", "none", IMAGE, "/bin/true"]),
        "builder (default net)": lambda i: timed([*ours, IMAGE, "/bin/true"]),
    }
    for runtime in ("runc", "crun"):
        if shutil.which(runtime):
            found[f"{runtime} run"] = lambda i, rt=runtime: timed(
                [rt, "run", "-b", str(bundle), f"bench-{os.getpid()}-{rt}-{i}"]
            )
    if docker is not None:
        found["docker run --network none"] = lambda i: docker.run_true(IMAGE)
    return found


def measure(runners: dict[str, Callable[[int], float]], runs: int) -> dict[str, float]:
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for name in names:
        runners[name](-1)  # warm: page cache, our bytecode, the seccomp program cache
    for i in range(runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(runners[name](i))
    return {n: statistics.median(v) * 1000 for n, v in times.items()}


def report(results: dict[str, float], runs: int) -> None:
    figures = readme_figures()
    peers = [p for p in ("runc run", "crun run") if p in results]
    head = "".join(f" {'/' + p.split()[0]:>7}" for p in peers)
    print(f"\nStart-up, /bin/true in busybox, medians of {runs}, interleaved (ms)")
    print(f"{'':<28} {'median':>7}{head}")
    for name, ms in results.items():
        ratios = "".join(f" {ms / results[p]:7.2f}" for p in peers)
        print(f"{name:<28} {ms:7.1f}{ratios}")
    if figures:
        print("against ../shared/bench/README.md's figures (low-high ms):")
        for name, ms in results.items():
            if not name.startswith("builder"):
                continue
            cells = "  ".join(
                f"/{rt} {lo:.0f}-{hi:.0f}: {ms / lo:.2f}-{ms / hi:.2f}"
                for rt, (lo, hi) in figures.items()
            )
            print(f"  {name:<26} {cells}")


def run(work: Path, runs: int, docker: DockerPeer | None) -> dict[str, float]:
    """The comparison, in a store of its own under `work`; prints and returns medians.
    Its layers are gzip: umoci (0.4) cannot unpack our default, zstd."""
    from run import base_store  # bench/run.py

    root = base_store(work, "store-startup", "--compression", "gzip")
    ensure_hugetlb_v1()
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        bundle = make_bundle(root, Path(tmp))
        if docker is not None:
            docker.load(builder_cmd(root, "save", "--format", "docker", "-o", "-", IMAGE))
        results = measure(contenders(root, bundle, docker), runs)
    report(results, runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-docker", action="store_true", help="Leave docker out.")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="builder-bench-") as tmp:
        docker = None if options.no_docker else DockerPeer.start()
        try:
            run(Path(tmp), options.runs, docker)
        finally:
            if docker is not None:
                docker.stop()


if __name__ == "__main__":
    main()
