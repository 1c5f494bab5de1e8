"""RUN --mount values parsed as BuildKit reads them."""

from __future__ import annotations

import pytest

from builder.recipe.mounts import MountError, RunMount, mount_from, parse_mount


def test_defaults_per_type() -> None:
    assert parse_mount("target=/src") == RunMount("bind", "/src", readonly=True)
    assert parse_mount("type=cache,target=/root/.cache/") == RunMount(
        "cache", "/root/.cache", readonly=False, id="/root/.cache/"
    )
    assert parse_mount("type=tmpfs,dst=/t") == RunMount("tmpfs", "/t", readonly=False)
    secret = parse_mount("type=secret,id=tok")
    assert (secret.target, secret.readonly, secret.id) == ("/run/secrets/tok", True, "tok")


def test_options() -> None:
    m = parse_mount("type=bind,source=src,target=/s,rw")
    assert (m.source, m.readonly) == ("src", False)
    m = parse_mount("type=cache,target=/c,id=pip,sharing=locked,mode=0700,uid=1,gid=2")
    assert (m.id, m.sharing, m.mode, m.uid, m.gid) == ("pip", "locked", 0o700, 1, 2)
    assert parse_mount("type=secret,id=a,required=true").required


def test_a_secret_as_a_variable() -> None:
    # BuildKit: env= without target= is the variable only; with target=, both.
    m = parse_mount("type=secret,id=tok,env=TOKEN")
    assert (m.target, m.env, m.id) == ("", "TOKEN", "tok")
    m = parse_mount("type=secret,id=tok,env=TOKEN,target=/t")
    assert (m.target, m.env) == ("/t", "TOKEN")
    assert parse_mount("type=secret,id=tok").env is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=nfs,target=/x", 'unsupported mount type "nfs"$'),
        ("type=tmp,target=/x", r'unsupported mount type "tmp" \(did you mean tmpfs\?\)'),
        ("type=cache", "needs target="),
        ("target=relative", "absolute"),
        ("target=/x,colour=red", "unexpected key 'colour' in 'colour=red'$"),
        ("typ=tmpfs", r"unexpected key 'typ' in 'typ=tmpfs' \(did you mean type\?\)"),
        ("type=cache,target=/x,sharing=maybe", 'unsupported sharing value "maybe"$'),
        ("type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'"),
        ("type=tmpfs,target=/x,size=lots", "invalid value for size: lots"),
        ("target=/x,ro=perhaps", "expected true or false"),
        ("type=ssh", "not supported yet"),
        ("type=bind,from=$STAGE,target=/x", "'from' doesn't support variable expansion"),
        ("type=tmpfs,from=build,target=/x", "does not take from="),
        ("type=secret", "needs id= or target="),
        ("type=secret,env=TOKEN", "env= needs id="),
        ("type=secret,id=t,env=1X", "not a variable name"),
        ("type=cache,target=/c,env=X", "not supported yet"),
    ],
)
def test_errors(spec: str, message: str) -> None:
    with pytest.raises(MountError, match=message):
        parse_mount(spec)


def test_tmpfs_size_in_go_units_ram_bytes() -> None:
    # BuildKit parses size= with docker/go-units RAMInBytes: binary units, any case.
    assert parse_mount("type=tmpfs,target=/t,size=128m").size == 128 << 20
    assert parse_mount("type=tmpfs,target=/t,size=1GiB").size == 1 << 30
    assert parse_mount("type=tmpfs,target=/t,size=4096").size == 4096
    assert parse_mount("type=tmpfs,target=/t").size is None


def test_from_is_kept_as_written() -> None:
    assert parse_mount("type=bind,from=build,source=/out,target=/x").from_ == "build"
    assert parse_mount("type=cache,from=alpine:3,target=/x").from_ == "alpine:3"
    assert mount_from("type=cache,FROM=build,target=/x") == "build"
    assert mount_from("type=cache,target=/x") is None
