"""`build -o`: buildx's spelling parsed, and checked before the build starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.cli.outputs import Output, parse_output, plan_outputs
from builder.errors import UsageError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("type=image", Output("image")),
        ("type=oci,dest=out.tar", Output("oci", "out.tar")),
        ("type=docker,dest=-", Output("docker", "-")),
        ("type=tar,dest=root.tar", Output("tar", "root.tar")),
        ("type=local,dest=dir", Output("local", "dir")),
        ("dir", Output("local", "dir")),  # buildx: a bare path is type=local
        ("-", Output("tar", "-")),  # buildx: `-o -` is a tar on stdout
        ('type=image,"name=a:1,b:2",push=true', Output("image", None, ("a:1", "b:2"), True)),
        ("type=registry,oci-mediatypes=false", Output("registry", oci_mediatypes=False)),
        ("TYPE=oci, dest=x", Output("oci", "x")),
    ],
)
def test_parse(spec: str, expected: Output) -> None:
    assert parse_output(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=zip,dest=x", "type must be one of image, registry, oci, docker, tar, local"),
        ("type=oci", "needs dest=PATH"),
        ("type=local,dest=-", "not stdout"),
        ("type=tar,dest=x,name=a", "type=tar takes dest; not name"),
        ("type=image,push=maybe", "expected true or false"),
        ("type=oci,dest=a,dest=b", "dest is given twice"),
        ("type=oci,dest", "'dest' is not key=value"),
    ],
)
def test_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_output(spec)


def test_plan_checks_the_outputs_together(tmp_path: Path) -> None:
    assert plan_outputs((), None).outputs == (Output("image"),)
    assert plan_outputs((), False).oci_mediatypes is False
    assert plan_outputs(("type=image,oci-mediatypes=false",), None).oci_mediatypes is False
    assert plan_outputs(("type=image,name=x:1", "type=image"), None).extra_names() == ("x:1",)
    with pytest.raises(UsageError, match="both true and false"):
        plan_outputs(("type=image,oci-mediatypes=false",), True)
    with pytest.raises(UsageError, match="only one output can go to stdout"):
        plan_outputs(("-", "type=oci,dest=-"), None)
    with pytest.raises(UsageError, match=r"the directory \S*/nope does not exist"):
        plan_outputs((f"type=oci,dest={tmp_path}/nope/x.tar",), None)
    pushing = plan_outputs(("type=registry,name=localhost:5000/x",), None)
    assert pushing.pusher is not None and pushing.registry_names() == ("localhost:5000/x",)
    assert plan_outputs(("type=image,push=true",), None).pusher is not None
    assert plan_outputs(("type=image",), None).pusher is None


def test_compression_keys_are_read_and_must_agree() -> None:
    plan = plan_outputs(["type=image,compression=gzip,compression-level=9"], None)
    assert plan.compression_attrs() == {"compression": "gzip", "compression-level": "9"}
    agreeing = plan_outputs(
        ["type=image,compression=gzip", "type=oci,dest=x,compression=gzip"], None
    )
    assert agreeing.compression_attrs() == {"compression": "gzip"}
    clash = plan_outputs(["type=image,compression=gzip", "type=oci,dest=x,compression=zstd"], None)
    with pytest.raises(UsageError, match="compression is given as both gzip and zstd"):
        clash.compression_attrs()
    with pytest.raises(UsageError, match="not compression"):
        parse_output("type=tar,dest=x,compression=gzip")  # a rootfs tar has no layers
