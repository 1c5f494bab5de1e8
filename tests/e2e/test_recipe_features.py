"""Recipe features end to end: heredocs, stages and --target, .dockerignore, import formats."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.support import Builder, make_context


def test_heredocs_in_run_and_copy(builder: Builder, tmp_path: Path) -> None:
    recipe = (
        "FROM busybox\n"
        "ARG NAME=world\n"
        "RUN <<EOF\n"
        'echo "script for $NAME" > /from-script\n'
        "echo second line >> /from-script\n"
        "EOF\n"
        "RUN cat > /from-cat <<-'END'\n"
        "\tliteral $NAME\n"
        "\tEND\n"
        "COPY <<EOF /etc/greeting\n"
        "hello ${NAME}\n"
        "EOF\n"
    )
    builder("build", "--build-arg", "NAME=ci", "-t", "heredoc", make_context(tmp_path, recipe))
    out = builder("run", "--rm", "heredoc", "cat", "/from-script", "/from-cat", "/etc/greeting")
    assert out.stdout == "script for ci\nsecond line\nliteral $NAME\nhello ci\n"


def test_stages_and_target(builder: Builder, tmp_path: Path) -> None:
    recipe = (
        "ARG BASE=busybox\n"
        "FROM $BASE AS base\n"
        "RUN echo base > /stage\n"
        "FROM base AS test\n"
        "RUN echo test >> /stage\n"
        "FROM busybox AS unrelated\n"
        "RUN exit 1\n"
        "FROM base AS release\n"
        "RUN echo release >> /stage\n"
    )
    context = make_context(tmp_path, recipe)
    log = builder("build", "--progress", "plain", "--target", "test", "-t", "t", context)
    assert "exit 1" not in log.stderr  # a stage the target does not need is not built
    assert builder("run", "--rm", "t", "cat", "/stage").stdout == "base\ntest\n"
    # The default target is the last stage; BuildKit builds only what it needs, so the
    # failing `unrelated` stage never runs.
    log = builder("build", "--progress", "plain", "-t", "r", context)
    assert "exit 1" not in log.stderr
    assert builder("run", "--rm", "r", "cat", "/stage").stdout == "base\nrelease\n"


def test_dockerignore_hides_files_from_copy(builder: Builder, tmp_path: Path) -> None:
    context = make_context(
        tmp_path,
        "FROM busybox\nCOPY . /ctx/\n",
        {
            ".dockerignore": "secret*\n**/*.log\n!keep.log\n",
            "secret.txt": "s",
            "a/b.log": "l",
            "keep.log": "k",
            "app.txt": "a",
        },
    )
    builder("build", "-t", "ign", context)
    listing = builder("run", "--rm", "ign", "find", "/ctx", "-type", "f").stdout.split()
    assert sorted(listing) == [
        "/ctx/.dockerignore",
        "/ctx/Dockerfile",
        "/ctx/app.txt",
        "/ctx/keep.log",
    ]


@pytest.mark.parametrize("flag", ["", "--gzip", "--zstd"])
def test_import_rootfs_tarballs(
    builder: Builder, busybox_rootfs: Path, tmp_path: Path, flag: str
) -> None:
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(
        ["tar", *([flag] if flag else []), "-C", str(busybox_rootfs), "-cf", str(tarball), "."],
        check=True,
    )
    builder("import", tarball, "imported:tar")
    assert builder("run", "--rm", "imported:tar", "echo", "ok").stdout == "ok\n"


def test_import_refuses_a_tarball_that_escapes(builder: Builder, tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "link").symlink_to("/tmp")
    tarball = tmp_path / "evil.tar"
    subprocess.run(["tar", "-C", str(evil), "-cf", str(tarball), "link"], check=True)
    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "link").mkdir()
    (tmp_path / "payload" / "link" / "escaped").write_text("x")
    subprocess.run(
        ["tar", "-C", str(tmp_path / "payload"), "-rf", str(tarball), "link/escaped"], check=True
    )
    result = builder("import", tarball, "evil", check=False)
    assert result.status == 7, result.stderr
    assert not Path("/tmp/escaped").exists()


def test_onbuild_triggers_run_in_the_child_and_are_not_inherited(
    builder: Builder, tmp_path: Path
) -> None:
    parent = make_context(tmp_path / "p", "FROM busybox\nONBUILD RUN echo triggered > /t\n")
    builder("build", "-t", "parent", parent)
    child = make_context(tmp_path / "c", "FROM parent\nRUN cat /t > /seen\n")
    log = builder("build", "--progress", "plain", "-t", "child", child)
    assert "ONBUILD RUN echo triggered > /t" in log.stderr
    assert builder("run", "--rm", "child", "cat", "/seen").stdout == "triggered\n"
    config = json.loads(builder("inspect", "child").stdout)[0]["Config"]["config"]
    assert "OnBuild" not in config


def test_from_scratch(builder: Builder, tmp_path: Path) -> None:
    context = make_context(
        tmp_path,
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir /made"]\n'
        'CMD ["/bin/busybox", "ls", "/"]\n',
    )
    shutil.copy("/bin/busybox", context / "busybox")
    builder("build", "-t", "tiny", context)
    listing = builder("run", "--rm", "tiny").stdout.split()
    assert {"bin", "made"} <= set(listing), listing
    info = json.loads(builder("inspect", "tiny").stdout)[0]
    assert len(info["Manifest"]["layers"]) == 2


MULTI_STAGE = """\
FROM busybox AS build
RUN mkdir -p /out/sub && echo built > /out/app && echo nested > /out/sub/n \\
    && ln -s /out/app /out/link && chmod 4755 /out/app && ln -s /out /outlink
FROM busybox
COPY --from=build /out /opt/
COPY --from=build /out/app /usr/bin/app
COPY --from=BUILD --chown=nobody /outlink/sub/n /n-owned
COPY --from=busybox:latest /etc/passwd /passwd.copy
COPY --from=0 /out/sub/* /globbed/
"""


def test_copy_from_stages_and_images(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, MULTI_STAGE)
    builder("build", "-t", "ms", context)
    out = builder(
        "run",
        "--rm",
        "ms",
        "sh",
        "-c",
        "stat -c '%n %u %a' /opt/app /usr/bin/app /n-owned /globbed/n;"
        " readlink /opt/link; cat /opt/sub/n; head -c 5 /passwd.copy",
    )
    assert out.stdout.splitlines() == [
        "/opt/app 0 4755",
        "/usr/bin/app 0 4755",
        "/n-owned 65534 644",
        "/globbed/n 0 644",
        "/out/app",
        "nested",
        "root:",
    ]
    again = builder("build", "--progress", "plain", "-t", "ms", context).stderr
    outcomes = [
        line
        for line in again.splitlines()
        if line.startswith("[") and line.endswith(("CACHED", "s"))
    ]
    assert outcomes and all(line.endswith("CACHED") for line in outcomes), again


def test_copy_from_a_missing_source(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox AS a\nFROM busybox\nCOPY --from=a /nope /x\n")
    result = builder("build", "-t", "x", context, check=False)
    assert result.status == 5
    assert (
        "Dockerfile:3: COPY --from=a /nope /x: failed to compute cache key: failed to calculate"
        ' checksum of ref a: "/nope": not found'
    ) in result.stderr
    result = builder(
        "build",
        "-t",
        "x",
        make_context(tmp_path / "b", "FROM busybox\nCOPY --from=nohost.invalid/x:1 /a /b\n"),
        check=False,
    )
    # Not a stage, so an image to pull: from a registry that cannot be reached, exit 9.
    assert result.status == 9, result.stderr
    assert "COPY --from=nohost.invalid/x:1: no stage of that name, and cannot reach" in (
        result.stderr
    )


@pytest.mark.parametrize("compress", ["", "--gzip", "--bzip2", "--xz", "--zstd"])
def test_add_unpacks_local_tar_archives(builder: Builder, tmp_path: Path, compress: str) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a").write_text("a\n")
    (src / "d" / "a").chmod(0o4755)
    (src / "l").symlink_to("d/a")
    context = make_context(
        tmp_path,
        "FROM busybox\nADD arch /x\nADD plain.txt /p.txt\n",
        {"plain.txt": "not an archive\n"},
    )
    subprocess.run(
        [
            "tar",
            *([compress] if compress else []),
            "-C",
            str(src),
            "-cf",
            str(context / "arch"),
            ".",
        ],
        check=True,
    )
    builder("build", "-t", "add", context)
    out = builder(
        "run", "--rm", "add", "sh", "-c", "stat -c '%n %a' /x/d/a; readlink /x/l; cat /p.txt"
    )
    assert out.stdout == "/x/d/a 4755\nd/a\nnot an archive\n"


def test_add_refuses_an_archive_that_leaves_its_destination(
    builder: Builder, tmp_path: Path
) -> None:
    import io
    import tarfile

    context = make_context(tmp_path, "FROM busybox\nADD evil.tar /x/\n")
    with tarfile.open(context / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    result = builder("build", "-t", "evil", context, check=False)
    assert result.status == 5, result.stderr
    assert "Dockerfile:2: ADD evil.tar /x/:" in result.stderr


RUN_MOUNTS = """\
FROM busybox
RUN --mount=type=bind,source=src,target=/mnt/src cat /mnt/src/a.txt \\
    && ! ls /mnt/src/skip.log 2>/dev/null
RUN --mount=type=bind,target=/ctx,rw echo scribble > /ctx/src/a.txt
RUN --mount=type=cache,target=/cache echo run >> /cache/count && wc -l < /cache/count
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch
RUN --mount=type=secret,id=tok cat /run/secrets/tok && stat -c ' %a' /run/secrets/tok
RUN --mount=type=secret,id=absent echo "an absent secret is fine unless required"
RUN for p in /mnt /ctx /cache /scratch /run; do test ! -e $p || exit 9; done
"""


def test_run_mounts(builder: Builder, tmp_path: Path) -> None:
    context = make_context(
        tmp_path,
        RUN_MOUNTS,
        {"src/a.txt": "from the context\n", "src/skip.log": "x", ".dockerignore": "**/*.log\n"},
    )
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    log = builder(
        "build", "--progress", "plain", "--secret", f"id=tok,src={secret}", "-t", "mounts", context
    ).stderr
    assert "from the context" in log and "s3cret 400" in log
    assert (context / "src" / "a.txt").read_text() == "from the context\n"  # rw writes dropped
    assert "\n1\n" in log  # the cache's first use
    again = builder(
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "--secret",
        f"id=tok,src={secret}",
        "-t",
        "mounts",
        context,
    ).stderr
    assert "\n2\n" in again  # the cache outlived the first build
    # mounts leave nothing in the image (the last RUN checked the mount points are gone)
    info = json.loads(builder("inspect", "mounts").stdout)[0]
    assert "s3cret" not in json.dumps(info)


def test_required_secret_missing(builder: Builder, tmp_path: Path) -> None:
    context = make_context(
        tmp_path, "FROM busybox\nRUN --mount=type=secret,id=x,required cat /run/secrets/x\n"
    )
    result = builder("build", "-t", "x", context, check=False)
    assert result.status == 3 and "secret x: not found" in result.stderr, result.stderr


def test_empty_steps_do_not_break_the_layer_stack(builder: Builder, tmp_path: Path) -> None:
    """Two empty layers share a digest; overlayfs refuses a dir twice in one stack."""
    context = make_context(tmp_path, "FROM busybox\nRUN true\nRUN true\nRUN echo ok > /ok\n")
    builder("build", "-t", "e", context)
    assert builder("run", "--rm", "e", "cat", "/ok").stdout == "ok\n"


def test_workdir_creates_the_directory_owned_by_user(builder: Builder, tmp_path: Path) -> None:
    recipe = "FROM busybox\nWORKDIR /tmp\nUSER nobody\nWORKDIR /data/deep\n"
    builder("build", "-t", "wd", make_context(tmp_path, recipe))
    info = json.loads(builder("inspect", "wd").stdout)[0]
    history = info["Config"]["history"]
    # /tmp exists: the empty layer, as docker 20.10's; /data/deep is made, owned by USER
    assert [h.get("empty_layer", False) for h in history[-3:]] == [False, True, False]
    assert len(info["Manifest"]["layers"]) == 3
    out = builder("run", "--rm", "--entrypoint", "stat", "wd", "-c", "%n %u", "/data", "/data/deep")
    assert out.stdout == "/data 65534\n/data/deep 65534\n"


def test_from_platform_is_the_host_or_an_error(builder: Builder, tmp_path: Path) -> None:
    ok = "FROM --platform=$BUILDPLATFORM busybox AS b\nRUN echo ok\n"
    builder("build", "-t", "p", make_context(tmp_path / "ok", ok))
    other = "FROM --platform=linux/s390x busybox\nRUN true\n"
    result = builder("build", "-t", "p", make_context(tmp_path / "no", other), check=False)
    assert result.status == 3
    assert "cross-platform builds are not supported" in result.stderr
