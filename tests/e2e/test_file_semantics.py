"""File operations as docker build (BuildKit) does them, through the real CLI and sandbox.

Each case is the fact a BuildKit frontend test pins down (named in its comment), built
here with our own recipe and context and checked in the image we make.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.e2e.support import Builder, make_context


def _stat(builder: Builder, image: str, fmt: str, *paths: str) -> list[str]:
    out = builder("run", "--rm", "--user", "0", image, "stat", "-c", fmt, *paths).stdout
    return out.splitlines()


def test_a_non_root_user_can_run(builder: Builder, tmp_path: Path) -> None:
    # The overlay's upper dir is a 0700 temp dir; `/` must keep the image's own mode.
    recipe = "FROM busybox\nUSER nobody\nRUN id -u > /tmp/id\nWORKDIR /w\nRUN pwd > /tmp/pwd\n"
    builder("build", "-t", "nobody", make_context(tmp_path, recipe))
    out = builder("run", "--rm", "nobody", "sh", "-c", "cat /tmp/id /tmp/pwd; stat -c %a:%u /")
    assert out.stdout == "65534\n/w\n755:0\n"
    # WORKDIR made the directory for the USER, as BuildKit's mkdir WithUser does.
    assert _stat(builder, "nobody", "%u:%g", "/w") == ["65534:65534"]


def test_a_workdir_the_user_cannot_enter_fails_the_step(builder: Builder, tmp_path: Path) -> None:
    recipe = "FROM busybox\nRUN mkdir -m 700 /w\nUSER nobody\nWORKDIR /w\nRUN true\n"
    result = builder("build", make_context(tmp_path, recipe), check=False)
    assert result.status == 5  # a step failure, not the sandbox's (8)
    assert "error: Dockerfile:5: RUN true: working directory /w: Permission denied" in (
        result.stderr
    )


def test_an_unknown_user(builder: Builder, tmp_path: Path) -> None:
    # BuildKit's file operations fall back to 0:0 for a name the image does not know;
    # only the RUN process fails, in moby/sys/user's words.
    recipe = (
        "FROM busybox\n"
        "USER nosuchuser\n"
        "WORKDIR /made/here\n"
        "COPY --chown=nosuchuser f /f\n"
        "COPY --chown=nobody:nosuchgroup f /g\n"
        "ADD --chown=nosuchuser:nogroup f /h\n"
    )
    context = make_context(tmp_path, recipe, {"f": "x"})
    builder("build", "-t", "unknown", context)
    assert _stat(builder, "unknown", "%n %u:%g", "/made/here", "/f", "/g", "/h") == [
        "/made/here 0:0",
        "/f 0:0",
        "/g 65534:65534",  # an unknown group keeps the user's gid
        "/h 0:65534",
    ]
    (context / "Dockerfile").write_text(recipe + "RUN id\n")
    result = builder("build", context, check=False)
    assert result.status == 5
    assert "unable to find user nosuchuser: no matching entries in passwd file" in result.stderr


def _tar(members: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar of files: name -> (content, uid)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, uid) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), uid, uid, 0o640
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_add_unpacks_only_a_source_that_is_an_archive(builder: Builder, tmp_path: Path) -> None:
    recipe = (
        "FROM busybox\n"
        "ADD dir /copied/\n"  # dir/inner.tar stays a file
        "ADD dir/inner.tar /unpacked/\n"
        "ADD --chown=7:8 dir/inner.tar /chowned/\n"  # testDockerfileAddChownArchive
        "ADD --unpack=false dir/inner.tar /kept/\n"  # newer BuildKit's --unpack
        "ADD --unpack dir/inner.tar /asked/\n"
    )
    context = make_context(tmp_path, recipe)
    (context / "dir").mkdir()
    (context / "dir" / "inner.tar").write_bytes(_tar({"a/file": (b"A", 33)}))
    builder("build", "-t", "add", context)
    script = "ls /copied /kept; cat /unpacked/a/file /asked/a/file"
    out = builder("run", "--rm", "add", "sh", "-c", script)
    assert out.stdout == "/copied:\ninner.tar\n\n/kept:\ninner.tar\nAA"
    assert _stat(builder, "add", "%n %u:%g", "/unpacked/a/file", "/chowned/a/file") == [
        "/unpacked/a/file 33:33",  # without --chown the archive's own ids
        "/chowned/a/file 7:8",
    ]


def test_copy_ownership(builder: Builder, tmp_path: Path) -> None:
    # testCopyChownExistingDir, testCopyChownCreateDest.
    recipe = (
        "FROM busybox AS source\n"
        "RUN touch /file && chown 100:200 /file && mkdir -p /dir/sub && touch /dir/sub/f"
        " && chown 100:200 /dir && chown 101:201 /dir/sub && chown 102:202 /dir/sub/f\n"
        "FROM busybox\n"
        "RUN mkdir /existing && chown 500:600 /existing\n"
        "COPY --from=source /file /kept/\n"
        "COPY --from=source /dir /dir\n"
        "COPY --from=source /dir/. /existing\n"
        "COPY --from=source --chown=300:400 /dir /chowned/deep\n"
        "COPY --chown=nobody f /ctx/made/\n"
    )
    builder("build", "-t", "own", make_context(tmp_path, recipe, {"f": "x"}))
    paths = ("/kept", "/kept/file", "/dir", "/dir/sub", "/dir/sub/f", "/existing")
    paths += ("/existing/sub", "/chowned", "/chowned/deep", "/chowned/deep/sub/f")
    paths += ("/ctx", "/ctx/made", "/ctx/made/f")
    assert _stat(builder, "own", "%n %u:%g", *paths) == [
        "/kept 0:0",
        "/kept/file 100:200",  # the source's ids, without --chown
        "/dir 0:0",  # made for the contents, as root
        "/dir/sub 101:201",
        "/dir/sub/f 102:202",
        "/existing 500:600",  # a directory the image has keeps its owner
        "/existing/sub 101:201",
        "/chowned 300:400",  # every directory the COPY makes is --chown's
        "/chowned/deep 300:400",
        "/chowned/deep/sub/f 300:400",
        "/ctx 65534:65534",
        "/ctx/made 65534:65534",
        "/ctx/made/f 65534:65534",
    ]


def test_chmod(builder: Builder, tmp_path: Path) -> None:
    # testCopyChmod (octal; parents made get the mode too) and testChmodNonOctal.
    recipe = (
        "FROM busybox AS base\n"
        "RUN mkdir -p /in/d/sub && touch /in/file && chmod 666 /in/file && chmod 124 /in/d/sub\n"
        "FROM busybox\n"
        "COPY --chmod=0644 foo /\n"
        "COPY --chmod=0 foo /foobis\n"
        "COPY --chmod=777 foo /parent/foo\n"
        "COPY --chmod=770 foo /parent/sub/foo\n"
        "ARG mode=755\n"
        "COPY --chmod=${mode} foo /footer\n"
        "COPY --chmod=go-w --from=base /in/file /f1\n"
        "COPY --chmod=u=rw,g=r,o=r --from=base /in/file /f2\n"
        "COPY --chmod=a+X --from=base /in/file /f3\n"
        "COPY --chmod=go-w --from=base /in/d /d1\n"
        "COPY --chmod=a+X --from=base /in/d/ /sym/made/\n"
        "COPY --chmod=+x foo /plusx\n"
    )
    context = make_context(tmp_path, recipe, {"foo": "foo"})
    (context / "foo").chmod(0o600)
    builder("build", "-t", "chmod", context)
    paths = ("/foo", "/foobis", "/parent", "/parent/sub", "/footer", "/f1", "/f2", "/f3")
    paths += ("/d1", "/d1/sub", "/sym", "/sym/made", "/sym/made/sub", "/plusx")
    assert _stat(builder, "chmod", "%n %04a", *paths) == [
        "/foo 0644",
        "/foobis 0000",
        "/parent 0777",
        "/parent/sub 0770",
        "/footer 0755",
        "/f1 0644",
        "/f2 0644",
        "/f3 0666",
        "/d1 0755",  # the destination of a directory's contents is made 0755
        "/d1/sub 0104",  # 0124 go-w
        "/sym 0755",  # a symbolic mode leaves the parents it makes 0755
        "/sym/made 0755",
        "/sym/made/sub 0135",  # 0124 a+X: a directory always gets X
        "/plusx 0711",
    ]


def test_invalid_chmod_in_buildkits_words(builder: Builder, tmp_path: Path) -> None:
    recipe = "FROM busybox\nARG m=64a\nCOPY --chmod=$m foo /\n"
    result = builder("build", make_context(tmp_path, recipe, {"foo": "x"}), check=False)
    assert result.status == 3
    assert (
        "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
        in result.stderr
    )


def test_copy_sources(builder: Builder, tmp_path: Path) -> None:
    # testCopyThroughSymlinkContext, testEmptyWildcard.
    recipe = "FROM busybox\nCOPY link/foo /\nCOPY foo nomatch* /w/\nCOPY nomatch* /empty/\n"
    context = make_context(tmp_path, recipe, {"sub/foo": "through", "foo": "top"})
    (context / "link").symlink_to("sub")
    builder("build", "-t", "src", context)
    out = builder("run", "--rm", "src", "sh", "-c", "cat /foo /w/foo; ls -d /empty || true")
    assert out.stdout == "throughtop"
    (context / "Dockerfile").write_text("FROM busybox\nCOPY missing /\n")
    result = builder("build", context, check=False)
    assert result.status == 10
    assert (
        'failed to compute cache key: failed to calculate checksum of ref context: "/missing":'
        in (result.stderr)
    )


def test_copy_onto_a_dangling_symlink_writes_through_it(builder: Builder, tmp_path: Path) -> None:
    recipe = (
        "FROM busybox\n"
        "RUN ln -s /target/file /link && ln -s ../../../escape /up\n"
        "COPY f /link\n"
        "COPY f /up\n"
    )
    builder("build", "-t", "dangling", make_context(tmp_path, recipe, {"f": "through"}))
    out = builder("run", "--rm", "dangling", "sh", "-c", "cat /target/file /escape; readlink /link")
    assert out.stdout == "throughthrough/target/file\n"


def test_run_mounts_from_a_stage_or_an_image(builder: Builder, tmp_path: Path) -> None:
    # BuildKit's from= on bind and cache mounts: the stage is built first (a dependency of
    # the plan, though never the target), a cache mount starts as the source's files.
    recipe = (
        "FROM busybox AS deps\n"
        "RUN mkdir /out && echo dep > /out/file && chown 5:6 /out/file\n"
        "FROM busybox AS unused\n"
        "RUN exit 1\n"
        "FROM busybox\n"
        "RUN --mount=type=bind,from=deps,source=/out,target=/m"
        " cat /m/file > /got && stat -c %u:%g /m/file >> /got\n"
        "RUN --mount=from=deps,target=/d,rw touch /d/scratch && cat /d/out/file >> /got\n"
        "RUN --mount=type=cache,from=deps,source=/out,target=/c,id=seeded"
        " cat /c/file >> /got && echo more > /c/added\n"
        "RUN --mount=type=cache,from=deps,source=/out,target=/c,id=seeded ls /c >> /got\n"
        "RUN --mount=type=bind,from=busybox,source=/bin/busybox,target=/bb"
        " test -x /bb && echo image >> /got\n"
    )
    builder("build", "-t", "mounts", make_context(tmp_path, recipe))
    out = builder("run", "--rm", "mounts", "cat", "/got").stdout
    assert out == "dep\n5:6\ndep\ndep\nadded\nfile\nimage\n"


def test_run_mount_from_cannot_expand(builder: Builder, tmp_path: Path) -> None:
    recipe = "FROM busybox AS a\nFROM busybox\nENV s=a\nRUN --mount=from=$s,target=/t true\n"
    result = builder("build", make_context(tmp_path, recipe), check=False)
    assert result.status == 3
    assert "'from' doesn't support variable expansion, define alias stage instead" in (
        result.stderr
    )
