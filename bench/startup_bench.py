#!/usr/bin/env python3
"""Container start-up through each tool's real CLI: `/bin/true` in the same busybox image.

    .venv/bin/python bench/startup_bench.py [--runs 20] [--no-docker]

- ours: `builder run --rm busybox /bin/true`, with `--network none` and with the default
  network (a private one: slirp4netns); and with `--network none` through a warm
  `builder server` (bench/server_mode.py: the console script as a thin client);
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
import resource
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

import installed  # noqa: E402
from docker_peer import DockerPeer  # noqa: E402 - bench/ is not a package
from server_mode import warm_server  # noqa: E402

README = REPO.parent / "shared" / "bench" / "README.md"
IMAGE = "busybox:latest"
IDLE_BETWEEN = 0.1  # s


def builder_cmd(root: Path, *args: str) -> list[str]:
    return installed.command(root, *args)


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
    save = subprocess.Popen(
        builder_cmd(root, "save", "-o", "-", IMAGE),
        stdout=subprocess.PIPE,
        env=installed.environment(),
    )
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


Sample = tuple[float, float]  # wall, CPU (user + sys of the process and what it waited for)


def timed(argv: Sequence[str], env: dict[str, str] | None = None) -> Sample:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


def contenders(
    root: Path, bundle: Path, docker: DockerPeer | None, server_env: dict[str, str] | None = None
) -> dict[str, Callable[[int], Sample]]:
    ours = builder_cmd(root, "run", "--rm")
    found: dict[str, Callable[[int], Sample]] = {
        "builder --network none": lambda i: timed(
            [*ours, "--network", "none", IMAGE, "/bin/true"], installed.environment()
        ),
        "builder (default net)": lambda i: timed(
            [*ours, IMAGE, "/bin/true"], installed.environment()
        ),
    }
    if server_env is not None:
        served = installed.command(root, "run", "--rm", "--network", "none")
        found["builder (server) --net none"] = lambda i: timed(
            [*served, IMAGE, "/bin/true"], server_env
        )
    for runtime in ("runc", "crun"):
        if shutil.which(runtime):
            found[f"{runtime} run"] = lambda i, rt=runtime: timed(
                [rt, "run", "-b", str(bundle), f"bench-{os.getpid()}-{rt}-{i}"]
            )
    if docker is not None:
        argv = docker.run_true_argv(IMAGE)
        found["docker run --network none"] = lambda i: timed(argv, docker.env)
    return found


def measure(runners: dict[str, Callable[[int], Sample]], runs: int) -> dict[str, Sample]:
    """Medians (ms) of wall and CPU time per contender."""
    names = list(runners)
    samples: dict[str, list[Sample]] = {n: [] for n in names}
    for name in names:
        runners[name](-1)  # warm: page cache, our bytecode, the seccomp program cache
    for i in range(runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(runners[name](i))
            # Each starts on an idle machine: what one leaves running behind its exit (our
            # launcher's spare supervisor copies its pages once idle; a runtime's teardown)
            # must not be timed as the next one's.
            time.sleep(IDLE_BETWEEN)
    return {
        n: (statistics.median(s[0] for s in v) * 1000, statistics.median(s[1] for s in v) * 1000)
        for n, v in samples.items()
    }


def report(samples: dict[str, Sample], runs: int) -> None:
    figures = readme_figures()
    results = {name: wall for name, (wall, _) in samples.items()}
    peers = [p for p in ("runc run", "crun run") if p in results]
    head = "".join(f" {'/' + p.split()[0]:>7}" for p in peers)
    print(f"\nStart-up, /bin/true in busybox, medians of {runs}, interleaved (ms)")
    print(f"{'':<28} {'median':>7}{head} {'CPU':>7}")
    for name, ms in results.items():
        ratios = "".join(f" {ms / results[p]:7.2f}" for p in peers)
        print(f"{name:<28} {ms:7.1f}{ratios} {samples[name][1]:7.1f}")
    print("(CPU: user + sys of the command and what it waited for; docker's daemon not counted)")
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


def run(work: Path, runs: int, docker: DockerPeer | None) -> dict[str, Sample]:
    """The comparison, in a store of its own under `work`; prints and returns medians.
    Its layers are gzip: umoci (0.4) cannot unpack our default, zstd."""
    from run import base_store  # bench/run.py

    root = base_store(work, "store-startup", "--compression", "gzip")
    ensure_hugetlb_v1()
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        bundle = make_bundle(root, Path(tmp))
        if docker is not None:
            docker.load(builder_cmd(root, "save", "--format", "docker", "-o", "-", IMAGE))
        with warm_server() as server_env:
            results = measure(contenders(root, bundle, docker, server_env), runs)
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
