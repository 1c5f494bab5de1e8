"""Resource limits through the CLI: `build` (every RUN step) and `run`, as docker spells
them; an OOM kill reported as such; the build's default pids limit; no cgroup left."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.support import Builder, make_context

HOG = "dd if=/dev/zero of=/dev/null bs=200M count=1"
FORKS = "for i in $(seq 60); do sleep 2 & done; wait"


def test_build_reports_an_oom_kill(builder: Builder, tmp_path: Path, cgroup_parent: str) -> None:
    context = make_context(tmp_path, f"FROM busybox\nRUN echo start\nRUN {HOG}\n")
    flags = ("--progress", "plain", "--memory", "64m", "--cgroup-parent", cgroup_parent)
    result = builder("build", *flags, context, check=False)
    assert result.status == 5, result.stderr
    assert (
        f"error: Dockerfile:3: RUN {HOG}: killed: out of memory (limit 64 MiB)\n" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_run_exits_137_on_an_oom_kill(builder: Builder, cgroup_parent: str) -> None:
    args = ("run", "--rm", "-m", "64m", "--cgroup-parent", cgroup_parent, "busybox")
    result = builder(*args, "sh", "-c", HOG, check=False)
    assert result.status == 137
    assert "killed: out of memory (limit 64 MiB)" in result.stderr
    assert builder(*args, "true").status == 0


def test_run_pids_limit(builder: Builder, cgroup_parent: str) -> None:
    args = ("run", "--rm", "--pids-limit", "50", "--cgroup-parent", cgroup_parent, "busybox")
    result = builder(*args, "sh", "-c", FORKS, check=False)
    assert "can't fork" in result.stderr


def test_the_build_has_a_default_pids_limit_from_the_config_file(
    builder: Builder, tmp_path: Path, cgroup_parent: str
) -> None:
    context = make_context(tmp_path, f"FROM busybox\nRUN {FORKS}\n")
    config = tmp_path / "builder.toml"
    config.write_text("[build]\npids-limit = 40\n")
    env = {"BUILDER_CONFIG": str(config)}
    build = ("build", "--progress", "plain", "--cgroup-parent", cgroup_parent)
    failed = builder(*build, context, check=False, env=env)
    assert failed.status == 5
    assert "can't fork" in failed.stderr
    # The flag wins over the file; the built-in default (4096) lets 60 processes run.
    assert builder(*build, "--pids-limit", "100", context, env=env).status == 0
    config.write_text("")
    assert builder(*build, "--no-cache", context, env=env).status == 0


def test_bad_limits_are_usage_errors(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN true\n")
    for flags, words in (
        (("--memory", "64x"), "--memory 64x: invalid size"),
        (("--memory", "1k"), "--memory: the minimum memory limit allowed is 6MB"),
        (("--cpus", "-1"), "--cpus -1: must be a positive number"),
        (("--memory-swap", "1g"), "--memory-swap needs --memory"),
    ):
        result = builder("build", *flags, context, check=False)
        assert result.status == 2, (flags, result.stderr)
        assert f"error: {words}" in result.stderr
