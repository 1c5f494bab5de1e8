"""ONBUILD triggers in child builds, and heredocs in RUN and COPY."""

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import NOT_SET, Case, F, params

SPECIAL = """FROM scratch
COPY <<EOF quotefile
"quotes in file"
EOF
COPY <<EOF slashfile1
\\
EOF
COPY <<EOF slashfile2
\\\\
EOF
COPY <<EOF slashfile3
\\$
EOF
COPY <<"EOF" rawslashfile1
\\
EOF
COPY <<"EOF" rawslashfile2
\\\\
EOF
COPY <<"EOF" rawslashfile3
\\$
EOF
"""
VARSUB = """FROM busybox
ARG name=world
COPY <<EOF /dest/c1
Hello ${name}!
EOF
COPY <<'EOF' /dest/c2
Hello ${name}!
EOF
COPY <<"EOF" /dest/c3
Hello ${name}!
EOF
COPY <<EOF /dest/q1
Hello '${name}'!
EOF
COPY <<EOF /dest/q2
Hello "${name}"!
EOF
RUN <<EOF
greeting="Hello"
echo "${greeting} ${name}!" > /dest/r1
EOF
RUN <<EOF
name="new world"
echo "Hello ${name}!" > /dest/r2
EOF
"""
INDENT = """FROM busybox
COPY <<EOF /dest/foo-copy
\tfoo
EOF
COPY <<-EOF /dest/bar-copy
\tbar
EOF
RUN <<EOF
echo "
\tfoo" > /dest/foo-run
EOF
RUN <<-EOF
echo "
\tbar" > /dest/bar-run
EOF
RUN <<EOF sh > /dest/foo3-run
echo "
\tfoo"
EOF
RUN <<-EOF sh > /dest/bar3-run
echo "
\tbar"
EOF
"""
SHEBANG = """FROM busybox
WORKDIR /dest
RUN <<EOF
#!/bin/awk -f
BEGIN {
\tprint "hello" >> "./out1"
\tprint "world" >> "./out1"
}
EOF
RUN <<-EOF
\t#!/bin/awk -f
\tBEGIN {
\t\tprint "hello" >> "./out2"
\t\tprint "world" >> "./out2"
\t}
EOF
"""
COMPLEX = """FROM busybox
WORKDIR /dest
RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \\
\tcat <<EOF2 | tr '[:lower:]' '[:upper:]' > ./out2
hello WORLD
EOF1
HELLO world
EOF2
RUN <<EOF 3<<IN1 4<<IN2 awk -f -
BEGIN {
\twhile ((getline line < "/proc/self/fd/3") > 0)
\t\tprint tolower(line) > "./fd3"
\twhile ((getline line < "/proc/self/fd/4") > 0)
\t\tprint toupper(line) > "./fd4"
}
EOF
hello WORLD
IN1
HELLO world
IN2
"""
COPY_HEREDOC = """FROM busybox
RUN echo 'user:x:1000:1000::/home/user:/bin/sh' >> /etc/passwd && echo 'user:x:1000:' >> /etc/group
WORKDIR /dest
COPY <<EOF single
single file
EOF
COPY <<EOF <<EOF2 double/
first file
EOF
second file
EOF2
COPY --chmod=777 <<EOF /permfiles/all
dummy content
EOF
COPY --chmod=0644 <<EOF /permfiles/rw
dummy content
EOF
COPY --chown=user:user <<EOF /permfiles/owned
dummy content
EOF
"""
ONBUILD_PARENT = "FROM busybox\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n"
ONBUILD_HEREDOC = 'FROM busybox\nONBUILD RUN <<EOF\necho "hello world" >> /dest\nEOF\n'
ONBUILD_CACHE = (
    "FROM busybox\nONBUILD RUN --mount=type=cache,target=/h10c-obcache"
    " echo -n 42 >> /h10c-obcache/foo && echo -n 11 >> /bar\n"
)

CASES = [
    Case(
        "onbuild-runs-in-child",
        "testOnBuildCleared",
        "FROM h10c-onbuild-parent\n",
        before=[("h10c-onbuild-parent", ONBUILD_PARENT)],
        files={"/out/foo": "11"},
        config={"OnBuild": NOT_SET},
        history_base=3,
        # dispatchOnbuild writes no history entry; the trigger's RUN writes one in the child.
        history=[("RUN /bin/sh -c mkdir -p /out && echo -n 11 >> /out/foo # buildkit", False)],
    ),
    Case(
        "onbuild-cleared-in-grandchild",
        "testOnBuildCleared",
        "FROM h10c-onbuild-child\nRUN echo -n 22 >> /out/foo\n",
        before=[
            ("h10c-onbuild-parent2", ONBUILD_PARENT),
            ("h10c-onbuild-child", "FROM h10c-onbuild-parent2\n"),
        ],
        files={"/out/foo": "1122"},
    ),
    Case(
        "onbuild-in-inherited-stage",
        "testOnBuildInheritedStageRun",
        "FROM busybox AS base\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n"
        "FROM base AS mid\nRUN cp /out/foo /out/bar\nFROM scratch\nCOPY --from=mid /out/bar /\n",
        files={"/bar": "11"},
    ),
    Case(
        "onbuild-copy-from-stage",
        "testOnBuildInheritedStageWithFrom",
        "FROM busybox AS src\nRUN mkdir -p /in && echo -n 12 > /in/file\n"
        "FROM busybox AS base\nONBUILD COPY --from=src /in/file /out/foo\n"
        "FROM base AS mid\nRUN cp /out/foo /out/bar\nFROM scratch\nCOPY --from=mid /out/bar /\n",
        files={"/bar": "12"},
    ),
    Case(
        # The trigger comes with an image, not a stage of this recipe: the stage it copies
        # from is needed only once the image's config is read (initOnBuildTriggers).
        "onbuild-image-copy-from-stage",
        "testOnBuildNamedContext",
        "FROM busybox AS src\nRUN mkdir -p /in && echo -n 13 > /in/file\n"
        "FROM h10d-onbuild-copy-from\nRUN cp /out/foo /out/bar\n",
        before=[
            ("h10d-onbuild-copy-from", "FROM busybox\nONBUILD COPY --from=src /in/file /out/foo\n")
        ],
        files={"/out/bar": "13"},
    ),
    Case(
        "onbuild-heredoc",
        "testOnBuildHeredoc",
        "FROM h10c-onbuild-heredoc AS base\nFROM scratch\nCOPY --from=base /dest /dest\n",
        before=[("h10c-onbuild-heredoc", ONBUILD_HEREDOC)],
        files={"/dest": "hello world\n"},
    ),
    Case(
        "onbuild-cache-mount",
        "testOnBuildWithCacheMount",
        "FROM h10c-onbuild-cache\nRUN --mount=type=cache,target=/h10c-obcache"
        ' [ "$(cat /h10c-obcache/foo)" = "42" ] && [ "$(cat /bar)" = "11" ]\n',
        before=[("h10c-onbuild-cache", ONBUILD_CACHE)],
        files={"/bar": "11"},
    ),
    Case(
        "copy-heredoc-names-modes-owners",
        "testCopyHeredoc",
        COPY_HEREDOC,
        files={
            "/dest/single": "single file\n",
            "/dest/double/EOF": "first file\n",
            "/dest/double/EOF2": "second file\n",
            "/permfiles/all": F(mode=0o777),
            "/permfiles/rw": F(mode=0o644),
            "/permfiles/owned": F(uid=1000, gid=1000),
        },
    ),
    Case(
        "copy-heredoc-special-symbols",
        "testCopyHeredocSpecialSymbols",
        SPECIAL,
        files={
            "/quotefile": '"quotes in file"\n',
            "/slashfile1": "\n",
            "/slashfile2": "\\\n",
            "/slashfile3": "$\n",
            "/rawslashfile1": "\\\n",
            "/rawslashfile2": "\\\\\n",
            "/rawslashfile3": "\\$\n",
        },
    ),
    Case(
        "run-basic-heredoc",
        "testRunBasicHeredoc",
        'FROM busybox\nRUN <<EOF\necho "i am" >> /dest\nwhoami >> /dest\nEOF\n',
        files={"/dest": "i am\nroot\n"},
    ),
    Case(
        "run-heredoc-with-other-shell",
        "testRunFakeHeredoc",
        'FROM busybox\nSHELL ["/bin/awk"]\nRUN <<EOF\nBEGIN {\n\tprint "foo" > "/dest"\n}\nEOF\n',
        files={"/dest": "foo\n"},
    ),
    Case(
        "run-shebang-heredoc",
        "testRunShebangHeredoc",
        SHEBANG,
        files={"/dest/out1": "hello\nworld\n", "/dest/out2": "hello\nworld\n"},
    ),
    Case(
        "run-complex-heredoc",
        "testRunComplexHeredoc",
        COMPLEX,
        files={
            "/dest/out1": "hello world\n",
            "/dest/out2": "HELLO WORLD\n",
            "/dest/fd3": "hello world\n",
            "/dest/fd4": "HELLO WORLD\n",
        },
    ),
    Case(
        "heredoc-indent",
        "testHeredocIndent",
        INDENT,
        files={
            "/dest/foo-copy": "\tfoo\n",
            "/dest/bar-copy": "bar\n",
            "/dest/foo-run": "\n\tfoo\n",
            "/dest/bar-run": "\nbar\n",
            "/dest/foo3-run": "\n\tfoo\n",
            "/dest/bar3-run": "\nbar\n",
        },
    ),
    Case(
        "heredoc-var-substitution",
        "testHeredocVarSubstitution",
        VARSUB,
        files={
            "/dest/c1": "Hello world!\n",
            "/dest/c2": "Hello ${name}!\n",
            "/dest/c3": "Hello ${name}!\n",
            "/dest/q1": "Hello 'world'!\n",
            "/dest/q2": 'Hello "world"!\n',
            "/dest/r1": "Hello world!\n",
            "/dest/r2": "Hello new world!\n",
        },
    ),
    Case(
        "copy-heredoc-history",
        "testOCILayoutMultiname",
        "FROM scratch\nCOPY <<EOF /foo\nhello\nEOF\n",
        files={"/foo": F("hello\n", mode=0o644, uid=0, gid=0)},
        history=[("COPY <<EOF /foo # buildkit", False)],
        history_base=0,
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_onbuild_heredocs(case: Case, behave: Any) -> None:
    behave(case)
