"""Start-up cost of the sandbox: `/bin/true` in a busybox root, against runc and crun.

    .venv/bin/python bench/sandbox_bench.py [runs]

Same rootfs, same run, medians in ms. runc/crun get a bundle from `runc spec` (args
/bin/true, terminal false, root read-only). crun refuses hybrid cgroups until a v1 hugetlb
hierarchy exists, so we mount one when missing (as the Makefile's `cgroups` target does).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from builder.sandbox import DEVNULL, DirRoot, OverlayRoot, SandboxSpec, run

APPLETS = ("sh", "true", "echo")


def make_rootfs(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "etc").mkdir()
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    for name in APPLETS:
        (path / "bin" / name).symlink_to("busybox")
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return path


def make_bundle(runtime: str, bundle: Path, rootfs: Path) -> None:
    bundle.mkdir()
    subprocess.run([runtime, "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    config["root"] = {"path": str(rootfs), "readonly": True}
    (bundle / "config.json").write_text(json.dumps(config))


def ensure_hugetlb_v1() -> None:
    if Path("/sys/fs/cgroup/unified").is_dir() and not Path("/sys/fs/cgroup/hugetlb").is_dir():
        os.makedirs("/sys/fs/cgroup/hugetlb", exist_ok=True)
        subprocess.run(
            ["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", "/sys/fs/cgroup/hugetlb"],
            check=False,
        )


def median_ms(fn: Callable[[], None], runs: int) -> float:
    fn()  # warm caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    tmp = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    try:
        rootfs = make_rootfs(tmp / "rootfs")
        upper, work = tmp / "upper", tmp / "work"
        upper.mkdir()
        work.mkdir()
        overlay = SandboxSpec(OverlayRoot((rootfs,), upper, work), ("/bin/true",), stdin=DEVNULL)
        plain = SandboxSpec(DirRoot(rootfs, readonly=True), ("/bin/true",), stdin=DEVNULL)

        def ours(spec: SandboxSpec) -> Callable[[], None]:
            def go() -> None:
                if run(spec) != 0:
                    raise SystemExit("sandbox: /bin/true failed")

            return go

        results = {
            "builder (overlay)": median_ms(ours(overlay), runs),
            "builder (dir, ro)": median_ms(ours(plain), runs),
        }
        ensure_hugetlb_v1()
        for runtime in ("crun", "runc"):
            if shutil.which(runtime) is None:
                continue
            bundle = tmp / f"bundle-{runtime}"
            make_bundle(runtime, bundle, rootfs)

            def go(rt: str = runtime, b: Path = bundle, seq: list[int] = []) -> None:  # noqa: B006
                seq.append(1)  # a fresh container name per run
                name = f"bench-{os.getpid()}-{rt}-{len(seq)}"
                subprocess.run(
                    [rt, "run", name],
                    cwd=b,
                    check=True,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                )

            results[f"{runtime} run"] = median_ms(go, runs)
        base = results.get("crun run")
        print(f"{'runtime':<20} {'median ms':>10} {'vs crun':>8}   ({runs} runs)")
        for name, ms in results.items():
            ratio = f"{ms / base:.2f}x" if base else "-"
            print(f"{name:<20} {ms:>10.1f} {ratio:>8}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
