"""Docker's isolation defaults through the real CLI: what a RUN step of a real build and a
`builder run` process hold (capabilities, seccomp, no_new_privs), and run's docker flags
that change them. Probes are harmless if a protection regressed (see
tests/sandbox/test_confinement.py, which also checks each fails without its protection)."""

from __future__ import annotations

from pathlib import Path

from builder.errors import RunFailed
from tests.e2e.support import Builder, make_context

STATUS = "grep -E '^(Cap(Bnd|Prm|Eff|Inh|Amb)|Seccomp|NoNewPrivs):' /proc/self/status"
DOCKER = {
    "CapInh": "0000000000000000",
    "CapPrm": "00000000a80425fb",
    "CapEff": "00000000a80425fb",
    "CapBnd": "00000000a80425fb",
    "CapAmb": "0000000000000000",
    "NoNewPrivs": "0",
    "Seccomp": "2",
}
# A setuid-root busybox, a password-less root and a user: `su` from the user must work.
SUID = (
    "RUN cp /bin/busybox /bin/busybox-suid && chmod 4755 /bin/busybox-suid"
    " && echo 'root::0:0:root:/root:/bin/sh' > /etc/passwd"
    " && echo 'user:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd\n"
)


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines())


def test_a_run_step_has_dockers_defaults_and_setuid_works(builder: Builder, tmp_path: Path) -> None:
    context = make_context(
        tmp_path,
        f"FROM busybox\nRUN {STATUS} > /status\n{SUID}USER user\n"
        "RUN busybox-suid su -c 'id -u > /tmp/su-uid' root\n",
    )
    builder("build", "-t", "confined", context)
    assert _status(builder("run", "--rm", "confined", "cat", "/status").stdout) == DOCKER
    assert builder("run", "--rm", "confined", "cat", "/tmp/su-uid").stdout == "0\n"


def test_run_has_dockers_defaults(builder: Builder) -> None:
    assert _status(builder("run", "--rm", "busybox", "sh", "-c", STATUS).stdout) == DOCKER


def test_run_cap_add_and_cap_drop(builder: Builder) -> None:
    # A tmpfs in a new, private mount namespace: CAP_SYS_ADMIN and its seccomp rules.
    probe = "unshare -m sh -c 'mount -t tmpfs probe /tmp && echo mounted'"
    refused = builder("run", "--rm", "busybox", "sh", "-c", probe, check=False)
    assert refused.status != 0 and "Operation not permitted" in refused.stderr
    ran = builder("run", "--rm", "--cap-add", "CAP_SYS_ADMIN", "busybox", "sh", "-c", probe)
    assert ran.stdout == "mounted\n"
    dropped = builder(
        "run", "--rm", "--cap-drop", "ALL", "--cap-add", "chown", "busybox", "sh", "-c", STATUS
    )
    assert _status(dropped.stdout)["CapEff"] == "0000000000000001"  # CAP_CHOWN alone


def test_run_security_opts(builder: Builder, tmp_path: Path) -> None:
    unconfined = builder(
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        f"{STATUS} && unshare -U true && echo unshared",
    )
    assert _status(unconfined.stdout.replace("unshared\n", ""))["Seccomp"] == "0"
    assert unconfined.stdout.endswith("unshared\n")
    nnp = builder(
        "run", "--rm", "--security-opt", "no-new-privileges", "busybox", "sh", "-c", STATUS
    )
    assert _status(nnp.stdout)["NoNewPrivs"] == "1"
    profile = tmp_path / "profile.json"
    profile.write_text(
        '{"defaultAction": "SCMP_ACT_ALLOW",'
        ' "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}'
    )
    custom = builder(
        "run",
        "--rm",
        "--security-opt",
        f"seccomp={profile}",
        "busybox",
        "mkdir",
        "/tmp/d",
        check=False,
    )
    assert custom.status != 0 and "Operation not permitted" in custom.stderr, custom.stderr


def test_bad_flags_are_one_error_line(builder: Builder, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    for flags in (
        ("--cap-add", "NOPE"),
        ("--security-opt", "apparmor=unconfined"),
        ("--security-opt", f"seccomp={bad}"),
        ("--security-opt", f"seccomp={tmp_path}/missing.json"),
    ):
        result = builder("run", "--rm", *flags, "busybox", "true", check=False)
        assert result.status == RunFailed.exit_code, (flags, result.stderr)  # docker's 125
        assert "Traceback" not in result.stderr
        assert [line for line in result.stderr.splitlines() if line.startswith("error:")], flags


def test_runs_keep_their_compiled_programs_in_the_store(builder: Builder, tmp_path: Path) -> None:
    probe = "unshare -U true && echo unshared"
    for _ in range(2):  # compiled, then read back from root/seccomp: confined both times
        refused = builder("run", "--rm", "busybox", "sh", "-c", probe, check=False)
        assert refused.status != 0 and "Operation not permitted" in refused.stderr
    assert len(list((builder.root / "seccomp").glob("*.bpf"))) == 1
    # A profile edited between two runs is compiled again, not served from the cache.
    profile = tmp_path / "profile.json"
    deny = (
        '{"defaultAction": "SCMP_ACT_ALLOW",'
        ' "syscalls": [{"names": %s, "action": "SCMP_ACT_ERRNO"}]}'
    )
    run = ("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "mkdir", "/tmp/d")
    profile.write_text(deny % '["mkdir", "mkdirat"]')
    assert builder(*run, check=False).status != 0
    profile.write_text(deny % '["rmdir"]')
    assert builder(*run).status == 0
    assert len(list((builder.root / "seccomp").glob("*.bpf"))) == 3


def test_a_builds_run_steps_share_the_stores_program(builder: Builder, tmp_path: Path) -> None:
    builder("build", "-t", "stepped", make_context(tmp_path, "FROM busybox\nRUN true\n"))
    (entry,) = (builder.root / "seccomp").glob("*.bpf")
    builder("run", "--rm", "stepped", "true")  # the same profile and caps: the same entry
    assert list((builder.root / "seccomp").glob("*.bpf")) == [entry]
