"""COPY and ADD: destinations, wildcards, symlinks, archives, --chown, --chmod, --link."""

# Recipe lines stay whole, one line of the recipe per source line, even past 100 columns.
# ruff: noqa: E501

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.archives import tar
from tests.behaviour.case import Case, F, Fails, Src, params

T_TAR = tar(("foo", "content0"))
T_TAR_GZ = tar(("foo", "content0"), gz=True)
CHMOD_ERROR = "invalid chmod parameter: '{}'. it should be octal string and between 0 and 07777"

OWNERSHIP_SOURCE = """FROM busybox AS source
RUN touch /file && chown 100:200 /file \\
 && mkdir -p /dir/subdir && touch /dir/subdir/nestedfile \\
 && chown 100:200 /dir && chown 101:201 /dir/subdir && chown 102:202 /dir/subdir/nestedfile
FROM busybox AS test_base
RUN mkdir -p /existingdir/existingsubdir && touch /existingdir/existingfile \\
 && chown 500:600 /existingdir && chown 501:601 /existingdir/existingsubdir \\
 && chown 501:601 /existingdir/existingfile
FROM test_base
"""
EXISTING = {
    "/existingdir": F(uid=500, gid=600),
    "/existingdir/existingsubdir": F(uid=501, gid=601),
    "/existingdir/existingfile": F(uid=501, gid=601),
}
WILDCARD_CONTEXT: dict[str, str | bytes | Src] = {
    "foo.go": "foo-contents",
    "bar.go": "bar-contents",
    "sub/dir1/dir2/foo": "foo-contents",
}
CHMOD_RECIPE = """FROM busybox
COPY --chmod=0644 foo /
COPY --chmod=777 bar /baz
COPY --chmod=0 foo /foobis
ARG mode
COPY --chmod=${mode} foo /footer
"""
USERS = (
    "RUN echo 'user:x:1000:1000::/home/user:/bin/sh' >> /etc/passwd"
    " && echo 'user01:x:1001:1001::/home/user01:/bin/sh' >> /etc/passwd"
    " && echo 'user:x:1000:' >> /etc/group && echo 'user01:x:1001:' >> /etc/group\n"
)

CASES = [
    Case(
        "context-file-keeps-mode-owned-by-root",
        "testDockerfileDirs",
        "FROM busybox\nCOPY foo /foo2\nCOPY foo /\nRUN echo -n bar > foo3\n"
        "RUN test -f foo\nRUN cmp -s foo foo2\nRUN cmp -s foo foo3\n",
        context={"foo": Src("bar", mode=0o600)},
        files={"/foo": F("bar", mode=0o600, uid=0, gid=0), "/foo2": F("bar", mode=0o600)},
    ),
    Case(
        "empty-dest-is-workdir",
        "testEmptyDestDir",
        'FROM busybox\nENV empty=""\nCOPY testfile $empty\n'
        'RUN [ "$(cat testfile)" = "contents0" ]\n',
        context={"testfile": "contents0"},
        files={"/testfile": "contents0"},
    ),
    Case(
        "dest-slash-makes-dir",
        "testPreserveDestDirSlash",
        'FROM busybox\nCOPY testfile /sample/\nRUN [ "$(cat /sample/testfile)" = "contents0" ]\n',
        context={"testfile": "contents0"},
        files={"/sample": F(kind="dir", mode=0o755), "/sample/testfile": "contents0"},
    ),
    Case(
        "copy-link-dot-dest",
        "testCopyLinkDotDestDir",
        "FROM busybox\nWORKDIR /var/www\nCOPY --link testfile .\n",
        context={"testfile": "contents0"},
        files={"/var/www/testfile": "contents0"},
    ),
    Case(
        "copy-link-empty-dest",
        "testCopyLinkEmptyDestDir",
        'FROM busybox\nWORKDIR /var/www\nENV empty=""\nCOPY --link testfile $empty\n',
        context={"testfile": "contents0"},
        files={"/var/www/testfile": "contents0"},
    ),
    Case(
        "copy-from-keeps-owners",
        "testCopyChownExistingDir",
        OWNERSHIP_SOURCE + "COPY --from=source /file .\nCOPY --from=source /dir /dir\n"
        "COPY --from=source /dir/. /existingdir\n",
        files={
            "/file": F(uid=100, gid=200),
            "/dir": F(uid=0, gid=0),  # the created target dir is root's
            "/dir/subdir": F(uid=101, gid=201),
            "/dir/subdir/nestedfile": F(uid=102, gid=202),
            **EXISTING,
            "/existingdir/subdir": F(uid=101, gid=201),
            "/existingdir/subdir/nestedfile": F(uid=102, gid=202),
        },
    ),
    Case(
        "copy-from-chown",
        "testCopyChownExistingDir",
        OWNERSHIP_SOURCE + "COPY --from=source --chown=300:400 /file .\n"
        "COPY --from=source --chown=300:400 /dir /dir\n"
        "COPY --from=source --chown=300:400 /dir/. /existingdir\n",
        files={
            "/file": F(uid=300, gid=400),
            "/dir": F(uid=300, gid=400),
            "/dir/subdir": F(uid=300, gid=400),
            "/dir/subdir/nestedfile": F(uid=300, gid=400),
            **EXISTING,
            "/existingdir/subdir": F(uid=300, gid=400),
            "/existingdir/subdir/nestedfile": F(uid=300, gid=400),
        },
    ),
    Case(
        "empty-wildcard-next-to-a-file",
        "testEmptyWildcard",
        "FROM scratch\nCOPY foo nomatch* /\n",
        context={"foo": "contents0"},
        files={"/foo": "contents0"},
    ),
    Case(
        "empty-wildcard-alone",
        "testEmptyWildcard",
        "FROM busybox\nCOPY nomatch* /\n",
        history=[("COPY nomatch* / # buildkit", False)],
    ),
    Case(
        "missing-literal-source-fails",
        "testHistoryError",
        "FROM scratch\nCOPY notexist /foo\n",
        fails=Fails(10, "notexist"),
    ),
    Case(
        "chown-applies-to-created-dest",
        "testCopyChownCreateDest",
        "FROM busybox\nARG group\nENV owner user01\n" + USERS + "COPY --chown=user:user . /dest\n"
        "COPY --chown=${owner}:${group} . /dest01\n",
        flags=["--build-arg", "group=user"],
        context={"a": "a"},
        files={
            "/dest": F(uid=1000, gid=1000),
            "/dest/a": F(uid=1000, gid=1000),
            "/dest01": F(uid=1001, gid=1000),
            "/dest01/a": F(uid=1001, gid=1000),
        },
    ),
    Case(
        "source-through-symlinked-dir-in-context",
        "testCopyThroughSymlinkContext",
        "FROM scratch\nCOPY link/foo .\n",
        context={"sub/foo": "contents", "link": Src(link="sub")},
        files={"/foo": F("contents", kind="file")},
    ),
    Case(
        "source-through-symlink-in-stage",
        "testCopyThroughSymlinkMultiStage",
        "FROM busybox AS build\nRUN mkdir -p /out/sub && ln -s /out/sub /sub && ln -s out/sub /sub2"
        ' && echo -n "data" > /sub/foo\nFROM scratch\nCOPY --from=build /sub/foo .\n'
        "COPY --from=build /sub2/foo bar\n",
        files={"/foo": "data", "/bar": "data"},
    ),
    Case(
        "symlink-in-copied-dir-kept-source-symlink-followed",
        "testCopyFollowAllSymlinks",
        "FROM scratch\nCOPY foo /\nCOPY foo/sub bar\n",
        context={"bar": "bar-contents", "foo/sub": Src(link="../bar")},
        files={"/sub": F(link="../bar"), "/bar": F("bar-contents", kind="file")},
    ),
    Case(
        "wildcard-sources-follow-symlinks",
        "testCopySymlinks",
        "FROM scratch\nCOPY foo /\nCOPY sub/l* alllinks/\n",
        context={
            "bar": "bar-contents",
            "foo": Src(link="bar"),
            "sub/lfile": "lfile-contents",
            "sub/l0": Src(link="subfile"),
            "sub/subfile": "subfile-contents",
            "sub/l1": Src(link="second"),
            "sub/second": Src(link="baz"),
            "sub/baz": "baz-contents",
        },
        files={
            "/foo": F("bar-contents", kind="file"),
            "/alllinks/l0": F("subfile-contents", kind="file"),
            "/alllinks/lfile": "lfile-contents",
            "/alllinks/l1": F("baz-contents", kind="file"),
        },
    ),
    Case(
        "chown-names-and-ids",
        "testCopyChown",
        "FROM busybox\nENV owner 1000\nCOPY --chown=daemon foo /\n"
        "COPY --chown=1000:nobody bar /baz\nARG group\nCOPY --chown=${owner}:${group} foo /foobis\n",
        flags=["--build-arg", "group=nobody"],
        context={"foo": "foo-contents", "bar/sub": ""},
        files={
            "/foo": F(uid=1, gid=1),
            "/baz": F(uid=1000, gid=65534),
            "/baz/sub": F(uid=1000, gid=65534),
            "/foobis": F(uid=1000, gid=65534),
        },
    ),
    Case(
        "chown-uid-only-sets-gid-too",
        "testCopyChown",
        "FROM busybox\nCOPY --chown=1234 foo /\n",
        context={"foo": "x"},
        files={"/foo": F(uid=1234, gid=1234)},
    ),
    Case(
        # BuildKit resolves a name it cannot find in /etc/passwd to 0 (ops/user_linux.go).
        "chown-unknown-user-is-root",
        "testCopyChown",
        "FROM busybox\nCOPY --chown=nosuchuser:daemon foo /\n",
        context={"foo": "x"},
        files={"/foo": F(uid=0, gid=1)},
    ),
    Case(
        "chown-unknown-group-keeps-users-gid",
        "testCopyChown",
        "FROM busybox\nCOPY --chown=daemon:nosuchgroup foo /\n",
        context={"foo": "x"},
        files={"/foo": F(uid=1, gid=1)},
    ),
    Case(
        "chown-name-on-scratch-fails",
        "testCopyChown",
        # A name needs the destination's /etc/passwd; scratch has no input to read it from, so
        # BuildKit fails ("invalid user index: -1", docker/buildx#1526) instead of using 0:0.
        "FROM scratch\nCOPY --chown=daemon:daemon foo /\n",
        context={"foo": "x"},
        fails=Fails(None, "daemon"),
    ),
    Case(
        "chown-name-on-scratch-fails-message",
        "testCopyChown",
        "FROM scratch\nENV A=1\nCOPY --chown=1:daemon foo /\n",
        context={"foo": "x"},
        fails=Fails(5, "invalid user index: -1"),
    ),
    Case(
        # Once a layer is there, the step has an input: no /etc/passwd in it means the name
        # is not found, which is 0 (readUser), as on any base.
        "chown-name-after-a-layer-on-scratch",
        "testCopyChown",
        "FROM scratch\nCOPY foo /a\nCOPY --chown=daemon:daemon foo /b\n",
        context={"foo": "x"},
        files={"/b": F("x", uid=0, gid=0)},
    ),
    Case(
        "chmod-octal-modes",
        "testCopyChmod",
        CHMOD_RECIPE,
        flags=["--build-arg", "mode=755"],
        context={"foo": Src("foo-contents", mode=0o600), "bar": Src("bar-contents", mode=0o700)},
        files={
            "/foo": F(mode=0o644),
            "/baz": F(mode=0o777),
            "/foobis": F(mode=0o000),
            "/footer": F(mode=0o755),
        },
    ),
    Case(
        # BuildKit since 75c457afd (June 2026, "test: cover chmod on copied parent dirs")
        # gives the parents COPY creates the --chmod mode; older releases gave them 0755.
        "chmod-applies-to-created-parents",
        "testCopyChmod",
        "FROM busybox\nCOPY --chmod=777 foo /parent/foo\nCOPY --chmod=770 foo /parent/sub/foo\n",
        context={"foo": "foo-contents"},
        files={"/parent": F(mode=0o777), "/parent/sub": F(mode=0o770)},
    ),
    Case(
        "chmod-symbolic",
        "testChmodNonOctal",
        "FROM busybox\nCOPY --chmod=go-w foo /a\nCOPY --chmod=u=rwx,g=rx,o= foo /b\n",
        context={"foo": Src("x", mode=0o666)},
        files={"/a": F(mode=0o644), "/b": F(mode=0o750)},
    ),
    Case(
        # chmod(1) semantics on the source's mode: X adds x to dirs (and to files with some x).
        "chmod-symbolic-from-stage",
        "testChmodNonOctal",
        "FROM busybox AS base\nRUN mkdir -p /in/dirs/d2/d2 /in/dirs/d3/d3"
        " && chmod 124 /in/dirs/d2/d2 /in/dirs/d3/d3 && touch /in/file && chmod 666 /in/file\n"
        "FROM scratch\nCOPY --from=base --chmod=u=rw,g=r,o=r /in/file /f2\n"
        "COPY --from=base --chmod=a+X /in/file /f3\n"
        "COPY --from=base --chmod=u+rw,g+r,o-x,o+w /in/dirs/d2 /\n"
        "COPY --from=base --chmod=a+X /in/dirs/d3 /\n",
        files={
            "/f2": F(mode=0o644),
            "/f3": F(mode=0o666),
            "/d2": F(mode=0o766),
            "/d3": F(mode=0o135),
        },
    ),
    Case(
        "chmod-invalid-letters",
        "testCopyInvalidChmod",
        "FROM scratch\nCOPY --chmod=64a foo /\n",
        context={"foo": "x"},
        fails=Fails(3, CHMOD_ERROR.format("64a")),
    ),
    Case(
        "chmod-out-of-range",
        "testCopyInvalidChmod",
        "FROM scratch\nCOPY --chmod=10000 foo /\n",
        context={"foo": "x"},
        fails=Fails(3, CHMOD_ERROR.format("10000")),
    ),
    Case(
        "add-chmod-invalid-letters",
        "testAddInvalidChmod",
        "FROM scratch\nADD --chmod=64a foo /\n",
        context={"foo": "x"},
        fails=Fails(3, CHMOD_ERROR.format("64a")),
    ),
    Case(
        "add-chmod-out-of-range",
        "testAddInvalidChmod",
        "FROM scratch\nADD --chmod=10000 foo /\n",
        context={"foo": "x"},
        fails=Fails(3, CHMOD_ERROR.format("10000")),
    ),
    Case(
        "override-files-and-dirs",
        "testCopyOverrideFiles",
        "FROM scratch\nCOPY sub sub\nCOPY sub sub\nCOPY files/foo.go dest/foo.go\n"
        "COPY files/foo.go dest/foo.go\nCOPY files dest\n",
        context={"sub/dir1/dir2/foo": "foo-contents", "files/foo.go": "foo.go-contents"},
        files={"/sub/dir1/dir2/foo": "foo-contents", "/dest/foo.go": "foo.go-contents"},
    ),
    Case(
        "env-in-source",
        "testCopyVarSubstitution",
        "FROM scratch\nENV FOO bar\nCOPY $FOO baz\n",
        context={"bar": "bar-contents"},
        files={"/baz": "bar-contents"},
    ),
    Case(
        "wildcards-and-dir-forms",
        "testCopyWildcards",
        "FROM scratch\nCOPY *.go /gofiles/\nCOPY f*.go foo2.go\nCOPY sub/* /subdest/\n"
        "COPY sub/*/dir2/foo /subdest2/\nCOPY sub/*/dir2/foo /subdest3/bar\nCOPY . all/\n"
        "COPY sub/dir1/ subdest4\nCOPY sub/dir1/. subdest5\nCOPY sub/dir1 subdest6\n",
        context=WILDCARD_CONTEXT,
        files={
            "/gofiles/foo.go": "foo-contents",
            "/gofiles/bar.go": "bar-contents",
            "/foo2.go": "foo-contents",
            "/subdest/dir2/foo": "foo-contents",
            "/subdest2/foo": "foo-contents",
            "/subdest3/bar": "foo-contents",
            "/all/foo.go": "foo-contents",
            "/all/sub/dir1/dir2/foo": "foo-contents",
            "/subdest4/dir2/foo": "foo-contents",
            "/subdest5/dir2/foo": "foo-contents",
            "/subdest6/dir2/foo": "foo-contents",
        },
        absent=["/subdest/dir1", "/subdest4/dir1"],
    ),
    Case(
        "relative-dests-follow-workdir",
        "testCopyRelative",
        "FROM busybox\nWORKDIR /test1\nWORKDIR test2\nCOPY foo ./\nADD foo ./bar/baz\n"
        "COPY foo ./bar/baz2\nWORKDIR ..\nCOPY foo ./\nCOPY foo /test3/\nWORKDIR /test4\n"
        "COPY . .\nWORKDIR /test5/test6\nCOPY foo ../\n",
        context={"foo": "hello"},
        files={
            "/test1/test2/foo": "hello",
            "/test1/test2/bar/baz": "hello",
            "/test1/test2/bar/baz2": "hello",
            "/test1/foo": "hello",
            "/test3/foo": "hello",
            "/test4/foo": "hello",
            "/test5/foo": "hello",
        },
        config={"WorkingDir": "/test5/test6"},
    ),
    Case(
        "unicode-and-escaped-names",
        "testCopyUnicodePath",
        "FROM busybox\nCOPY test-äöü.txt /\nCOPY test-%C3%A4%C3%B6%C3%BC.txt /\nCOPY test+aou.txt /\n",
        context={
            "test-äöü.txt": "foo",
            "test-%C3%A4%C3%B6%C3%BC.txt": "bar",
            "test+aou.txt": "baz",
        },
        files={
            "/test-äöü.txt": "foo",
            "/test-%C3%A4%C3%B6%C3%BC.txt": "bar",
            "/test+aou.txt": "baz",
        },
    ),
    Case(
        "copy-onto-dangling-symlink-writes-through",
        "testSymlinkDestination",
        "FROM busybox\nRUN ln -s /target /link\nCOPY foo /link\n",
        context={"foo": "foo-contents"},
        files={"/link": F(link="/target"), "/target": "foo-contents"},
    ),
    Case(
        "dest-dir-through-symlink-from-archive",
        "testSymlinkDestination",
        "FROM scratch\nADD t.tar /\nCOPY foo /symlink/\n",
        context={"foo": "foo-contents", "t.tar": tar(("tmp", None), ("symlink", "->tmp"))},
        files={"/symlink": F(link="tmp"), "/tmp/foo": "foo-contents"},
    ),
    Case(
        "context-dir-replaced-by-file",
        "testContextChangeDirToFile",
        "FROM scratch\nCOPY foo /\n",
        context={"foo": "contents2"},
        files={"/foo": "contents2"},
    ),
    Case(
        "add-tar-unpacks",
        "testDockerfileAddArchive",
        "FROM busybox\nADD t.tar /\n",
        context={"t.tar": T_TAR},
        files={"/foo": "content0"},
        absent=["/t.tar"],
    ),
    Case(
        "add-tar-gz-unpacks",
        "testDockerfileAddArchive",
        "FROM busybox\nADD t.tar.gz /\n",
        context={"t.tar.gz": T_TAR_GZ},
        files={"/foo": "content0"},
        absent=["/t.tar.gz"],
    ),
    Case(
        "add-unpack-false-keeps-archive",
        "testDockerfileAddArchive",
        "FROM busybox\nADD --unpack=false t.tar.gz /\n",
        context={"t.tar.gz": T_TAR_GZ},
        files={"/t.tar.gz": T_TAR_GZ},
        absent=["/foo"],
    ),
    Case(
        "copy-does-not-unpack",
        "testDockerfileAddArchive",
        "FROM busybox\nCOPY t.tar.gz /\n",
        context={"t.tar.gz": T_TAR_GZ},
        files={"/t.tar.gz": T_TAR_GZ},
        absent=["/foo"],
    ),
    Case(
        "add-archive-implied-parent-dir",
        "testDockerfileAddArchiveWithImpliedParentDir",
        "FROM busybox\nADD t.tar.gz /\n",
        context={"t.tar.gz": tar(("d/sub/foo", "content0"), gz=True)},
        files={"/d/sub/foo": "content0", "/d": F(kind="dir")},
    ),
    Case(
        "add-chown-applies-to-unpacked",
        "testDockerfileAddChownArchive",
        "FROM scratch\nADD --chown=100:200 t.tar /out/\n",
        context={"t.tar": tar(("dir", None), ("dir/foo", "content0"))},
        files={
            "/out/dir/foo": F("content0", uid=100, gid=200),
            "/out/dir": F(uid=100, gid=200),
        },
    ),
    Case(
        "add-wildcard-archives",
        "testDockerfileAddArchiveWildcard",
        "FROM scratch\nADD *.tar /dest\n",
        context={"t.tar": T_TAR, "b.tar": tar(("bar", "content1"))},
        files={"/dest/foo": "content0", "/dest/bar": "content1"},
    ),
    Case(
        "add-chown-expands-vars",
        "testDockerfileAddChownExpand",
        "FROM busybox\nARG group\nENV owner 1000\nADD --chown=${owner}:${group} foo /\n",
        flags=["--build-arg", "group=nobody"],
        context={"foo": "foo-contents"},
        files={"/foo": F("foo-contents", uid=1000, gid=65534)},
    ),
    Case(
        "add-checksum-needs-remote-source",
        "testAddChecksum",
        "FROM busybox\nADD --checksum=sha256:"
        "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae foo /tmp/foo\n",
        context={"foo": "foo"},
        fails=Fails(3, "checksum requires HTTP(S) or Git sources"),
    ),
    Case(
        # Only a source that is itself an archive is unpacked, never one inside a dir.
        "add-dir-keeps-archives-inside",
        "testDockerfileAddArchive",
        "FROM busybox\nADD dir /dest/\n",
        context={"dir/t.tar": T_TAR},
        files={"/dest/t.tar": T_TAR},
        absent=["/dest/foo"],
    ),
    Case(
        "add-local-file-like-copy",
        "testCopyRelative",
        "FROM busybox\nADD foo /x/y\n",
        context={"foo": Src("hello", mode=0o640)},
        files={"/x/y": F("hello", mode=0o640, uid=0, gid=0), "/x": F(mode=0o755)},
    ),
    Case(
        "copy-from-variable-rejected",
        "testDockerfileCopyFromArgs",
        "FROM scratch\nCOPY --from=$FOO . .\n",
        fails=Fails(3, "variable expansion is not supported for --from"),
    ),
    Case(
        "copy-dir-copies-contents",
        "testCopyWildcards",
        "FROM busybox\nCOPY dir /d\n",
        context={"dir/a": "a", "dir/sub/b": "b"},
        files={"/d/a": "a", "/d/sub/b": "b"},
        absent=["/d/dir"],
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_copy_add(case: Case, behave: Any) -> None:
    behave(case)
