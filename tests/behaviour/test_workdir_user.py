"""WORKDIR and USER: directories created, their owners and modes, who RUN runs as."""

# Recipe lines stay whole, one line of the recipe per source line, even past 100 columns.
# ruff: noqa: E501

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import Case, F, Fails, params

ID = '"$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)"'
DOCKERIO = (
    "RUN echo 'dockerio:x:1001:1001::/bin:/bin/false' >> /etc/passwd"
    " && echo 'dockerio:x:1001:' >> /etc/group\n"
)
USER_RECIPE = (
    "FROM busybox AS base\nRUN mkdir -m 0777 /out\nRUN id -un > /out/rootuser\n"
    "RUN [ \"$(id -u):$(id -g)/$(id -un):$(id -gn)\" = '0:0/root:root' ]\n"
    "USER root\nRUN [ \"$(id -G):$(id -Gn)\" = '0 10:root wheel' ]\n" + DOCKERIO + "USER dockerio\n"
    f"RUN [ {ID} = '1001:1001/dockerio:dockerio/1001:dockerio' ]\n"
    f"USER root\nRUN [ {ID} = '0:0/root:root/0 10:root wheel' ]"
    " && echo 'supplementary:x:1002:dockerio' >> /etc/group\n"
    f"USER dockerio\nRUN [ {ID} = '1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary' ]\n"
    f"USER 1001:dockerio\nRUN [ {ID} = '1001:1001/dockerio:dockerio/1001:dockerio' ]\n"
    f"USER dockerio:supplementary\n"
    f"RUN [ {ID} = '1001:1002/dockerio:supplementary/1002:supplementary' ]\n"
    f"USER 1042:1043\nRUN [ {ID} = '1042:1043/1042:1043/1043:1043' ]\n"
    "USER daemon\nRUN id -un > /out/daemonuser\n"
    "FROM scratch\nCOPY --from=base /out /\nUSER nobody\n"
)
ADD_USER = "RUN echo 'user:x:1000:1000::/home/user:/bin/sh' >> /etc/passwd && echo 'user:x:1000:' >> /etc/group\n"

CASES = [
    Case(
        "workdir-creates-dir",
        "testWorkdirCreatesDir",
        "FROM scratch\nWORKDIR /foo\nWORKDIR /\n",
        files={"/foo": F(kind="dir", mode=0o755, uid=0, gid=0)},
        config={"WorkingDir": "/"},
    ),
    Case(
        # WORKDIR's mkdir looks USER up in the stage's files, which scratch has none of
        # (dispatchWorkdir: llb.WithUser; ops/file.go: invalid user index: -1).
        "workdir-named-user-on-scratch-fails",
        "testWorkdirUser",
        "FROM scratch\nUSER daemon\nWORKDIR /foo\n",
        fails=Fails(5, "invalid user index: -1"),
    ),
    Case(
        # WORKDIR / makes no dir, so nothing is looked up.
        "workdir-root-named-user-on-scratch",
        "testWorkdirUser",
        "FROM scratch\nUSER daemon\nWORKDIR /\n",
        config={"WorkingDir": "/", "User": "daemon"},
    ),
    Case(
        "workdir-created-as-user",
        "testWorkdirUser",
        "FROM busybox\n" + ADD_USER + "USER user\nWORKDIR /mydir\n"
        "RUN [ \"$(stat -c '%U %G' /mydir)\" = 'user user' ]\n",
        files={"/mydir": F(kind="dir", uid=1000, gid=1000, mode=0o755)},
    ),
    Case(
        "workdir-existing-keeps-owner",
        "testWorkdirExists",
        "FROM busybox\n" + ADD_USER + "RUN mkdir /mydir && chown user:user /mydir\n"
        "WORKDIR /mydir\n",
        files={"/mydir": F(uid=1000, gid=1000)},
    ),
    Case(
        "workdir-relative-ignored-by-copy-from",
        "testWorkdirCopyIgnoreRelative",
        "FROM busybox AS base\nWORKDIR /foo\nCOPY Dockerfile /\nFROM busybox\n"
        "COPY --from=base Dockerfile .\n",
        files={"/Dockerfile": F(contains=["WORKDIR /foo"])},
    ),
    Case(
        "workdir-relative-joins",
        "testCopyRelative",
        "FROM busybox\nWORKDIR /a\nWORKDIR b\nWORKDIR ../c\nRUN pwd > /pwd\n",
        files={"/pwd": "/a/c\n"},
        config={"WorkingDir": "/a/c"},
    ),
    Case(
        "workdir-expands-env",
        "testCopyRelative",
        "FROM busybox\nENV DIR=/srv\nWORKDIR $DIR/app\n",
        files={"/srv/app": F(kind="dir")},
        config={"WorkingDir": "/srv/app"},
    ),
    Case(
        "user-switching-and-groups",
        "testUser",
        USER_RECIPE,
        files={"/rootuser": "root\n", "/daemonuser": "daemon\n"},
        config={"User": "nobody"},
    ),
    Case(
        "user-additional-gids",
        "testUserAdditionalGids",
        'FROM busybox\nSHELL ["/bin/sh", "-euxc"]\n'
        'RUN [ "$(id)" = "uid=0(root) gid=0(root) groups=0(root),10(wheel)" ]\n'
        'USER 1234\nRUN [ "$(id)" = "uid=1234 gid=0(root) groups=0(root)" ]\n'
        'USER 1234:1234\nRUN [ "$(id)" = "uid=1234 gid=1234 groups=1234" ]\n'
        'USER daemon\nRUN [ "$(id)" = "uid=1(daemon) gid=1(daemon) groups=1(daemon)" ]\n',
        config={"User": "daemon"},
    ),
    Case(
        "run-as-nobody",
        "testUser",
        "FROM busybox\nUSER nobody\nRUN id -u > /tmp/id\n",
        config={"User": "nobody"},
    ),
    Case(
        "run-as-nobody-in-workdir",
        "testWorkdirUser",
        "FROM busybox\nWORKDIR /w\nUSER nobody\nRUN id -u > /tmp/id && pwd > /tmp/pwd\n",
        files={"/tmp/id": "65534\n", "/tmp/pwd": "/w\n", "/w": F(uid=0, mode=0o755)},
    ),
    Case(
        "root-dir-mode-kept-under-user",
        "testUser",
        "FROM busybox\nUSER nobody\nRUN stat -c %a / > /tmp/mode\n",
        files={"/tmp/mode": "755\n"},
    ),
    Case(
        # BuildKit resolves a user it cannot find to 0 for the WORKDIR it creates.
        "workdir-as-unknown-user",
        "testWorkdirUser",
        "FROM busybox\nUSER nosuchuser\nWORKDIR /tmp/new\n",
        files={"/tmp/new": F(kind="dir", uid=0, gid=0)},
        config={"User": "nosuchuser"},
    ),
    Case(
        "run-as-unknown-user-fails",
        "testUser",
        "FROM busybox\nUSER nosuchuser\nRUN true\n",
        fails=Fails(None, "unable to find user nosuchuser"),
    ),
    Case(
        "user-expands-env",
        "testUser",
        "FROM busybox\nENV U=daemon\nUSER $U\n",
        config={"User": "daemon"},
        history=[("ENV U=daemon", True), ("USER daemon", True)],
    ),
    Case(
        "user-uid-gid-without-passwd",
        "testUser",
        "FROM busybox\nUSER 1042:1043\nRUN id -u > /tmp/u; id -g > /tmp/g\n",
        files={"/tmp/u": F("1042\n", uid=1042, gid=1043), "/tmp/g": "1043\n"},
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_workdir_user(case: Case, behave: Any) -> None:
    behave(case)
