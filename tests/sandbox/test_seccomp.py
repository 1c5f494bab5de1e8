"""Docker's default seccomp profile as shipped, and its resolution for a capability set.

The filter's behaviour in a real process is tested in test_confinement.py; these check
the data and moby's resolution rules on compiled programs (libseccomp's real output)."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
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


# ---- the binary-tree dispatch decides as the list does ---------------------------------

_LD_ABS, _AND, _JA, _RET, _JEQ, _JGT, _JGE, _JSET = 0x20, 0x54, 0x05, 0x06, 0x15, 0x25, 0x35, 0x45
_ARGS_AT = 16  # struct seccomp_data: nr, arch, instruction_pointer, then args[6]


def _instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("=HBBI", program, at) for at in range(0, len(program), 8)]


def _decide(program: list[tuple[int, int, int, int]], data: bytes) -> tuple[int, bool]:
    """A classic-BPF run over seccomp_data `data`, as the kernel's: (the action, whether
    an argument was read). Only the opcodes libseccomp emits; any other fails."""
    pc = a = 0
    read_args = False
    while True:
        code, jt, jf, k = program[pc]
        if code == _LD_ABS:
            a = struct.unpack_from("=I", data, k)[0]
            read_args = read_args or k >= _ARGS_AT
        elif code == _AND:
            a &= k
        elif code == _JA:
            pc += k
        elif code == _RET:
            return k, read_args
        elif code in (_JEQ, _JGT, _JGE, _JSET):
            hit = {_JEQ: a == k, _JGT: a > k, _JGE: a >= k, _JSET: bool(a & k)}[code]
            pc += jt if hit else jf
        else:
            raise AssertionError(f"opcode {code:#x}")
        pc += 1


def _arg_constants(flat: list[tuple[int, int, int, int]]) -> set[int]:
    """What the list program compares an argument word with (each test follows the load
    of its word there), and the neighbours."""
    found = {0, 0xFFFFFFFF}
    loaded = 0
    for code, _jt, _jf, k in flat:
        if code == _LD_ABS:
            loaded = k
        elif code in (_JEQ, _JGT, _JGE, _JSET, _AND) and loaded >= _ARGS_AT:
            found.update(v & 0xFFFFFFFF for v in (k - 1, k, k + 1))
    return found


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64's architecture numbers")
def test_the_tree_program_decides_every_syscall_as_the_list_program() -> None:
    """Every syscall number (x32's too) of every architecture the filter names and of one
    it does not; where a decision reads an argument, every value the programs compare
    an argument word with (and its neighbours) in each word, the others 0."""
    profile, caps = seccomp.default_profile(), DEFAULT
    tree = _instructions(seccomp.compile_filter(profile, caps))
    flat = _instructions(seccomp.compile_filter(profile, caps, tree=False))
    assert tree != flat  # two layouts indeed
    values = _arg_constants(flat)
    numbers = [*range(600), *range(0x40000000, 0x40000000 + 600), 0xFFFFFFFF]
    compared = 0
    for arch in (0xC000003E, 0x40000003, 0):  # x86_64 (and x32), i386, another
        for nr in numbers:
            data = bytearray(struct.pack("=IIQ6Q", nr, arch, 0, *[0] * 6))
            decided, reads_args = _decide(tree, bytes(data))
            assert (decided, reads_args) == _decide(flat, bytes(data)), (arch, nr)
            compared += 1
            if not reads_args:
                continue  # a path that read no argument decides alike for any
            for word in range(12):  # each half of each argument
                for value in values:
                    case = bytearray(data)
                    struct.pack_into("=I", case, _ARGS_AT + 4 * word, value)
                    assert _decide(tree, bytes(case))[0] == _decide(flat, bytes(case))[0], (
                        arch,
                        nr,
                        word,
                        value,
                    )
                    compared += 1
    assert compared > 3600
