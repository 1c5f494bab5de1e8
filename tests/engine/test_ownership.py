"""COPY --chown names resolved with the sandbox's passwd/group reader, against the /etc
files of the root the writer reaches the image at ("/" in the sandbox; a plain dir here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.engine.copier import Ownership


@pytest.fixture
def root(tmp_path: Path) -> str:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/sh\n"
        "app:x:1000:1001:app:/home/app:/bin/sh\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\ndaemon:x:1:\nstaff:x:50:app\n")
    return str(tmp_path)


def test_names_and_numbers(root: str) -> None:
    assert Ownership(None).resolve(root) == (0, 0)
    assert Ownership("root").resolve(root) == (0, 0)
    assert Ownership("app").resolve(root) == (1000, 1001)  # the user's primary group
    assert Ownership("daemon:root").resolve(root) == (1, 0)
    assert Ownership("7").resolve(root) == (7, 7)  # a bare uid is its own group, as BuildKit
    assert Ownership("7:staff").resolve(root) == (7, 50)
    assert Ownership("root:12").resolve(root) == (0, 12)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nosuch", (0, 0)),  # BuildKit's readUser: an unknown name is 0:0
        ("nosuch:staff", (0, 50)),
        ("0:nosuch", (0, 0)),  # an unknown group keeps the user's gid
        ("app:nosuch", (1000, 1001)),
        ("7:nosuch", (7, 7)),
        ("app:", (1000, 1001)),
    ],
)
def test_unknown_names_fall_back_as_buildkit(
    root: str, spec: str, expected: tuple[int, int]
) -> None:
    assert Ownership(spec).resolve(root) == expected


def test_names_come_from_the_root_not_the_host(root: str) -> None:
    # The host has no user "app" with uid 1000 in every setup; the root given does.
    assert Ownership("app").resolve(root) == (1000, 1001)
    assert Ownership("app").resolve(str(Path(root) / "elsewhere")) == (0, 0)
