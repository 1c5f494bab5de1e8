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
    ("spec", "message"),
    [("nosuch", "unable to find user 'nosuch'"), ("0:nosuch", "unable to find group 'nosuch'")],
)
def test_unknown_names(root: str, spec: str, message: str) -> None:
    with pytest.raises(LookupError, match=message):
        Ownership(spec).resolve(root)


def test_names_come_from_the_root_not_the_host(root: str) -> None:
    # The host has no user "app" with uid 1000 in every setup; the root given does.
    assert Ownership("app").resolve(root) == (1000, 1001)
    with pytest.raises(LookupError):
        Ownership("app").resolve(str(Path(root) / "elsewhere"))
