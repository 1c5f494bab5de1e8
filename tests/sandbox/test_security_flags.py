"""docker run's --cap-add, --cap-drop and --security-opt, read as docker reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.sandbox.capabilities import DEFAULT, every, tweak
from builder.sandbox.security import Security, from_flags


def test_no_flag_is_dockers_default() -> None:
    assert from_flags() == Security()


@pytest.mark.parametrize("spelling", ["NET_ADMIN", "CAP_NET_ADMIN", "net_admin", "cap_net_admin"])
def test_capability_spellings(spelling: str) -> None:
    assert tweak([spelling], []) == DEFAULT | {"CAP_NET_ADMIN"}


def test_drop_then_add() -> None:
    assert tweak([], ["CHOWN", "KILL"]) == DEFAULT - {"CAP_CHOWN", "CAP_KILL"}
    assert tweak(["CHOWN"], ["CHOWN"]) == DEFAULT  # an add wins, as in moby


def test_all() -> None:
    assert tweak(["ALL"], []) == every()
    assert tweak(["all"], ["SYS_ADMIN"]) == every() - {"CAP_SYS_ADMIN"}
    assert tweak(["NET_RAW"], ["ALL"]) == {"CAP_NET_RAW"}
    assert tweak([], ["ALL"]) == frozenset()


def test_an_unknown_capability_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown capability: 'NET_ADMINN'"):
        tweak(["NET_ADMINN"], [])


def test_security_opts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    assert from_flags(security_opt=["seccomp=unconfined"]).seccomp == "unconfined"
    assert from_flags(security_opt=["seccomp=unconfined", "seccomp=builtin"]) == Security()
    assert from_flags(security_opt=[f"seccomp={profile}"]).seccomp == str(profile)
    assert from_flags(security_opt=[f"seccomp:{profile}"]).seccomp == str(profile)
    # A relative path is the caller's file, never the name of the built-in profile.
    (tmp_path / "default").write_text(profile.read_text())
    monkeypatch.chdir(tmp_path)
    assert from_flags(security_opt=["seccomp=default"]).seccomp == str(tmp_path / "default")
    for opt in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"):
        assert from_flags(security_opt=[opt]).no_new_privileges
    assert not from_flags(security_opt=["no-new-privileges=false"]).no_new_privileges


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        ("apparmor=unconfined", "not supported"),
        ("label=disable", "not supported"),
        ("seccomp=", "not supported"),
        ("no-new-privileges=maybe", "want no-new-privileges"),
        ("seccomp=/nonexistent/profile.json", "No such file or directory"),
    ],
)
def test_bad_security_opts(opt: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        from_flags(security_opt=[opt])


def test_a_bad_profile_is_named(tmp_path: Path) -> None:
    profile = tmp_path / "p.json"
    for text, message in (
        ("{", "Expecting"),
        ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown action"),
        ('{"defaultAction": "SCMP_ACT_NOTIFY"}', "not supported"),
        ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}', "action"),
    ):
        profile.write_text(text)
        with pytest.raises(UsageError, match=f"seccomp profile {profile}: .*{message}"):
            from_flags(security_opt=[f"seccomp={profile}"])
