"""docker run's -v, --mount and --tmpfs parsed into the sandbox's mounts, docker's words for
each refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RunFailed
from builder.runtime.volumes import parse_mount, parse_tmpfs, parse_volume
from builder.sandbox.spec import Mount


def test_volume_binds_rw_or_ro_and_makes_a_missing_host_dir(tmp_path: Path) -> None:
    host = tmp_path / "a" / "b"
    assert parse_volume(f"{host}:/data") == Mount("/data", "bind", host, readonly=False)
    assert host.is_dir()  # docker -v creates it
    assert parse_volume(f"{host}:/data:ro").readonly
    assert not parse_volume(f"{host}:/data:rw,z").readonly


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/only", "invalid volume specification: '/only'"),
        ("named:/x", '"named" includes invalid characters'),
        ("/h:relative", "mount path must be absolute"),
        ("/h:/x:rx", "invalid mode: rx"),
        ("/h:/x:ro:extra", "invalid volume specification"),
    ],
)
def test_volume_refusals(spec: str, message: str) -> None:
    with pytest.raises(RunFailed, match=message.replace("(", r"\(")):
        parse_volume(spec)


def test_mount_bind_takes_dockers_key_aliases(tmp_path: Path) -> None:
    for src, dst in (("source", "target"), ("src", "dst"), ("src", "destination")):
        m = parse_mount(f"type=bind,{src}={tmp_path},{dst}=/x,readonly")
        assert m == Mount("/x", "bind", tmp_path, readonly=True)
    assert not parse_mount(f"type=bind,src={tmp_path},dst=/x,ro=false").readonly


def test_mount_tmpfs_size_and_mode() -> None:
    m = parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770")
    assert m == Mount("/t", "tmpfs", readonly=False, options=f"size={64 << 20},mode=1770")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "type=bind,src=/nonexistent/x,dst=/x",
            'invalid mount config for type "bind": bind source path does not exist: /nonexistent/x',
        ),
        ("type=bind,dst=/x", "field Source must not be empty"),
        ("type=bind,src=/", "field Target must not be empty"),
        ("type=tmpfs,src=/,dst=/x", "field Source must not be specified"),
        ("type=volume,dst=/x", "only bind and tmpfs"),
        ("target=/x", "only bind and tmpfs"),  # docker's default type is volume
        ("type=bind,src=/,dst=/x,bind-propagation=shared", "unsupported key 'bind-propagation'"),
        ("type=tmpfs,dst=/x,tmpfs-mode=999", "invalid tmpfs-mode"),
        ("type=tmpfs,dst=/x,tmpfs-size=lots", "invalid size"),
        ("type=bind,src=/,dst=/x,readonly=maybe", "invalid value for readonly"),
    ],
)
def test_mount_refusals(spec: str, message: str) -> None:
    with pytest.raises(RunFailed, match=message):
        parse_mount(spec)


def test_tmpfs_options() -> None:
    assert parse_tmpfs("/t") == Mount("/t", "tmpfs", readonly=False)
    m = parse_tmpfs("/t:size=1m,mode=700,ro,nosuid,nodev,exec")
    assert m == Mount("/t", "tmpfs", readonly=True, options="size=1m,mode=700")
    for bad in ("/t:noexec", "/t:size=1x", "/t:weird", "relative"):
        with pytest.raises(RunFailed):
            parse_tmpfs(bad)
