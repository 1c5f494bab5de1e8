"""Docker's default seccomp profile as shipped, and its resolution for a capability set.

The filter's behaviour in a real process is tested in test_confinement.py; these check
the data and moby's resolution rules on compiled programs (libseccomp's real output)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from builder.sandbox import seccomp
from builder.sandbox.capabilities import DEFAULT, every
from tests.e2e.support import REPO


def test_the_default_profile_is_in_dockers_format() -> None:
    data = json.loads(seccomp.DEFAULT_FILE.read_text())
    assert data["defaultAction"] == "SCMP_ACT_ERRNO" and data["defaultErrnoRet"] == 1
    allowed = {
        n
        for s in data["syscalls"]
        if not s.get("includes")
        and not s.get("excludes")
        and not s.get("args")
        and s["action"] == "SCMP_ACT_ALLOW"
        for n in s["names"]
    }
    assert {"read", "execve", "clone3"} - allowed == {"clone3"}  # clone3: ENOSYS, see below
    assert not {"mount", "unshare", "setns", "init_module", "bpf", "ptrace"} & allowed
    by_cap = {
        c: n
        for s in data["syscalls"]
        for c in s.get("includes", {}).get("caps", [])
        for n in [set(s["names"])]
    }
    assert {"mount", "unshare", "setns", "sethostname"} <= by_cap["CAP_SYS_ADMIN"]
    assert {"init_module", "finit_module"} <= by_cap["CAP_SYS_MODULE"]


def test_rules_follow_the_capability_set() -> None:
    base = seccomp.compiled_default(DEFAULT)
    admin = seccomp.compiled_default(DEFAULT | {"CAP_SYS_ADMIN"})
    assert base != admin and len(base) % 8 == len(admin) % 8 == 0
    assert seccomp.compiled_default(every()) != admin


def test_arch_conditions() -> None:
    rule = seccomp.Rule(("x",), 0, includes=seccomp.Condition(arches=("amd64",)))
    assert seccomp._applies(rule, "amd64", frozenset(), (6, 1))
    assert not seccomp._applies(rule, "arm64", frozenset(), (6, 1))
    old = seccomp.Rule(("x",), 0, includes=seccomp.Condition(min_kernel=(4, 8)))
    assert not seccomp._applies(old, "amd64", frozenset(), (4, 4))
    excl = seccomp.Rule(("x",), 0, excludes=seccomp.Condition(caps=("CAP_SYS_ADMIN",)))
    assert not seccomp._applies(excl, "amd64", frozenset({"CAP_SYS_ADMIN"}), (6, 1))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the x86 sub-architectures")
def test_x86_64_filters_its_32_bit_sub_architectures() -> None:
    assert seccomp._arches(seccomp.default_profile(), "SCMP_ARCH_X86_64") == [
        "x86_64",
        "x86",
        "x32",
    ]


def _diff_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("seccomp_diff", REPO / "scripts/seccomp_diff.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_diff_script_compares_by_meaning(tmp_path: Path) -> None:
    script = _diff_script()
    data = json.loads(seccomp.DEFAULT_FILE.read_text())
    data["syscalls"][0]["names"].reverse()  # order does not count
    data["syscalls"][0]["names"].remove("uname")
    data["syscalls"][0]["names"].append("mount")
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    assert script.main(["seccomp_diff.py", str(seccomp.DEFAULT_FILE)]) == 0
    lines = script.diff(seccomp.default_profile(), seccomp.read_profile(other))
    assert [line.split()[:2] for line in lines] == [["-", "uname"], ["+", "mount"]]
