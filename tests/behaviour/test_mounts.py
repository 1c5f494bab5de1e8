"""RUN --mount: bind, cache, tmpfs, secret and ssh; and secrets given to the build."""

# Recipe lines stay whole, one line of the recipe per source line, even past 100 columns.
# ruff: noqa: E501

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import Case, F, Fails, params

SECRET = {"flags": ["--secret", "id=mysecret,env=H10C_SECRET"], "env": {"H10C_SECRET": "pw"}}

CASES = [
    Case(
        "bind-context-default",
        "testMountContext",
        'FROM busybox\nRUN --mount=target=/context [ "$(cat /context/testfile)" = "contents0" ]\n',
        context={"testfile": "contents0"},
        absent=["/context/testfile"],
    ),
    Case(
        "bind-is-read-only",
        "testMountContext",
        "FROM busybox\nRUN --mount=target=/context touch /context/new\n",
        fails=Fails(5, "Read-only file system"),
    ),
    Case(
        "bind-rw-writes-discarded",
        "testMountRWCache",
        "FROM busybox AS build\nRUN mkdir /out && echo foo > /out/foo\n"
        "FROM busybox\nRUN --mount=from=build,src=out,target=/o,rw touch /o/bar && ls /o > /list\n"
        "COPY --from=build /out /checkout\n",
        files={"/list": "bar\nfoo\n", "/checkout/foo": "foo\n"},
        absent=["/checkout/bar", "/o/bar"],
    ),
    Case(
        "bind-from-image",
        "testMountRWCache",
        "FROM busybox\nRUN --mount=type=bind,from=busybox,source=/etc/passwd,target=/p cp /p /copy\n",
        files={"/copy": F(contains=["root:x:0:0"])},
    ),
    Case(
        "bind-source-subdir",
        "testMountDuplicate",
        "FROM busybox\nRUN --mount=source=sub,target=/s cat /s/f > /o\n",
        context={"sub/f": "in sub"},
        files={"/o": "in sub"},
    ),
    Case(
        "bind-two-mounts-nested",
        "testMountDuplicate",
        "FROM busybox AS base\nRUN --mount=source=.,target=/tmp/test \\\n"
        "  --mount=source=b.txt,target=/tmp/b.txt \\\n"
        "  cat /tmp/test/a.txt /tmp/b.txt > /combined.txt\n"
        "FROM scratch\nCOPY --from=base /combined.txt /\n",
        context={"a.txt": "foo\n", "b.txt": "bar\n"},
        files={"/combined.txt": "foo\nbar\n"},
    ),
    Case(
        "tmpfs-not-kept",
        "testMountTmpfs",
        "FROM busybox\nRUN --mount=target=/mytmp,type=tmpfs touch /mytmp/foo\nRUN [ ! -f /mytmp/foo ]\n",
        absent=["/mytmp/foo"],
    ),
    Case(
        "tmpfs-size",
        "testMountTmpfsSize",
        "FROM busybox AS base\nRUN --mount=type=tmpfs,target=/dev/shm,size=128m"
        " mount | grep /dev/shm > /tmpfssize\nFROM scratch\nCOPY --from=base /tmpfssize /\n",
        files={"/tmpfssize": F(contains=["size=131072k"])},
    ),
    Case(
        "cache-uid-gid-mode",
        "testCacheMountUser",
        "FROM busybox\nRUN --mount=type=cache,target=/h10c-c1,uid=1001,gid=1002,mode=0751"
        ' [ "$(stat -c "%u %g %f" /h10c-c1)" = "1001 1002 41e9" ]\n',
    ),
    Case(
        "cache-default-id-is-target",
        "testCacheMountDefaultID",
        "FROM busybox\nRUN --mount=type=cache,target=/h10c-c2 touch /h10c-c2/foo\n"
        "RUN --mount=type=cache,target=/h10c-c2b [ ! -f /h10c-c2b/foo ]\n"
        "RUN --mount=type=cache,target=/h10c-c2 [ -f /h10c-c2/foo ]\n",
        absent=["/h10c-c2/foo"],
        no_cache=True,
    ),
    Case(
        "cache-target-from-env",
        "testMountEnvVar",
        "FROM busybox\nENV SOME_PATH=/h10c-c3\nRUN --mount=type=cache,target=/h10c-c3 touch /h10c-c3/foo\n"
        "RUN --mount=type=cache,target=$SOME_PATH [ -f $SOME_PATH/foo ]\n",
        no_cache=True,
    ),
    Case(
        "cache-type-from-arg",
        "testMountArg",
        "FROM busybox\nARG MNT_TYPE=cache\nRUN --mount=type=$MNT_TYPE,target=/h10c-c4 touch /h10c-c4/foo\n"
        "RUN --mount=type=cache,target=/h10c-c4 [ -f /h10c-c4/foo ]\n",
        no_cache=True,
    ),
    Case(
        "cache-id-from-env-across-stages",
        "testMountEnvAcrossStages",
        "FROM busybox AS stage1\nENV MNT_ID=h10c-c5\nENV MNT_TYPE2=cache\n"
        "RUN --mount=type=cache,id=h10c-c5,target=/abcabc touch /abcabc/foo\n"
        "RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/cbacba [ -f /cbacba/foo ]\n"
        "FROM stage1\nRUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/whatever [ -f /whatever/foo ]\n",
        no_cache=True,
    ),
    Case(
        "cache-target-from-meta-arg",
        "testMountMetaArg",
        "ARG META_PATH=/tmp/meta\nFROM busybox\nARG META_PATH\n"
        "RUN --mount=type=cache,id=h10c-c6,target=/tmp/meta touch /tmp/meta/foo\n"
        "RUN --mount=type=cache,id=h10c-c6,target=$META_PATH [ -f /tmp/meta/foo ]\n",
        no_cache=True,
    ),
    Case(
        "cache-contents-not-in-image",
        "testCacheMountDefaultID",
        "FROM busybox\nRUN --mount=type=cache,target=/h10c-c7 touch /h10c-c7/foo\n",
        absent=["/h10c-c7/foo"],
    ),
    Case(
        "mount-from-variable-rejected",
        "testMountFromError",
        "FROM busybox AS test\nRUN touch /tmp/test\nFROM busybox\nENV ttt=test\n"
        "RUN --mount=from=$ttt,type=cache,target=/tmp ls\n",
        fails=Fails(3, "'from' doesn't support variable expansion, define alias stage instead"),
    ),
    Case(
        "cache-from-stage",
        "testMountFromError",
        "FROM busybox AS seed\nRUN mkdir /seed && echo -n s > /seed/f\n"
        "FROM busybox\nRUN --mount=type=cache,id=h10c-c8,from=seed,source=/seed,target=/c cp /c/f /f\n",
        files={"/f": "s"},
    ),
    Case(
        "mount-flag-typo",
        "testMountInvalid",
        "FROM scratch\nRUN --mont=target=/mytmp,type=tmpfs /bin/true\n",
        fails=Fails(3, "unknown flag: --mont (did you mean mount?)"),
    ),
    Case(
        "mount-key-typo",
        "testMountInvalid",
        "FROM scratch\nRUN --mount=typ=tmpfs /bin/true\n",
        fails=Fails(3, "unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)"),
    ),
    Case(
        "mount-type-typo",
        "testMountInvalid",
        "FROM scratch\nRUN --mount=type=tmp /bin/true\n",
        fails=Fails(3, 'unsupported mount type "tmp" (did you mean tmpfs?)'),
    ),
    Case(
        "secret-file-params-no-stub",
        "testSecretFileParams",
        "FROM busybox\nRUN --mount=type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret"
        ' [ "$(stat -c "%u %g %f" /mysecret)" = "100 102 81e1" ]\n'
        "RUN [ ! -f /mysecret ] # check no stub left behind\n",
        absent=["/mysecret"],
        **SECRET,  # type: ignore[arg-type]
    ),
    Case(
        "secret-required-missing",
        "testSecretRequiredWithoutValue",
        "FROM busybox\nRUN --mount=type=secret,required,id=mysecret foo\n",
        fails=Fails(3, "secret mysecret: not found"),
    ),
    Case(
        "secret-optional-missing",
        "testSecretFileParams",
        "FROM busybox\nRUN --mount=type=secret,id=nope [ ! -f /run/secrets/nope ]\n",
    ),
    Case(
        "secret-default-path-and-mode",
        "testSecretFileParams",
        "FROM busybox\nRUN --mount=type=secret,id=mysecret"
        ' [ "$(cat /run/secrets/mysecret)" = "pw" ] && stat -c "%a %u %g" /run/secrets/mysecret > /m\n',
        files={"/m": "400 0 0\n"},
        absent=["/run/secrets/mysecret"],
        **SECRET,  # type: ignore[arg-type]
    ),
    Case(
        "secret-as-env",
        "testSecretAsEnviron",
        "FROM busybox\nENV SECRET_ENV=foo\nRUN --mount=type=secret,id=mysecret,env=SECRET_ENV"
        ' [ "$SECRET_ENV" = "pw" ] && [ ! -f /run/secrets/mysecret ] || false\n',
        env_has={"SECRET_ENV": "foo"},
        **SECRET,  # type: ignore[arg-type]
    ),
    Case(
        "secret-as-env-and-file",
        "testSecretAsEnvironWithFileMount",
        "FROM busybox\nRUN --mount=type=secret,id=mysecret,target=/run/secrets/secret,env=SECRET_ENV"
        ' [ "$SECRET_ENV" = "pw" ] && [ -f /run/secrets/secret ] || false\n',
        **SECRET,  # type: ignore[arg-type]
    ),
    Case(
        "secret-not-in-history",
        "testSecretFileParams",
        "FROM busybox\nRUN --mount=type=secret,id=mysecret cat /run/secrets/mysecret > /dev/null\n",
        history=[("RUN /bin/sh -c cat /run/secrets/mysecret > /dev/null # buildkit", False)],
        **SECRET,  # type: ignore[arg-type]
    ),
    Case(
        # BuildKit forwards an SSH agent socket (testSSHSocketParams); we do not, and say so.
        "ssh-mount-clear-error",
        "testSSHSocketParams",
        "FROM busybox\nRUN --mount=type=ssh,mode=741,uid=100,gid=102"
        ' [ "$(stat -c "%u %g %f" $SSH_AUTH_SOCK)" = "100 102 c1e1" ]\n',
        fails=Fails(3, "type=ssh is not supported"),
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_mounts(case: Case, behave: Any) -> None:
    behave(case)
