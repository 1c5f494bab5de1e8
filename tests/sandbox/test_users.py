from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox.users import Credentials, resolve


@pytest.fixture
def etc(tmp_path: Path) -> str:
    (tmp_path / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "broken line\n"
        "app:x:1000:1000::/home/app:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (tmp_path / "group").write_text(
        "root:x:0:\nwheel:x:10:app,other\napp:x:1000:\nstaff:x:50:\nbad:x:notanumber:app\n"
    )
    return str(tmp_path)


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", Credentials(0, 0, (0,), "/root")),
        ("app", Credentials(1000, 1000, (1000, 10), "/home/app")),
        ("1000", Credentials(1000, 1000, (1000, 10), "/home/app")),
        ("app:staff", Credentials(1000, 50, (50,), "/home/app")),
        ("app:77", Credentials(1000, 77, (77,), "/home/app")),
        ("4242", Credentials(4242, 0, (0,), "/")),
        ("4242:4243", Credentials(4242, 4243, (4243,), "/")),
        ("nobody", Credentials(65534, 65534, (65534,), "/nonexistent")),
    ],
)
def test_resolve(etc: str, user: str, expected: Credentials) -> None:
    assert resolve(user, etc) == expected


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("alice", "unable to find user alice: no matching entries in passwd file"),
        ("app:nogroup", "unable to find group nogroup: no matching entries in group file"),
        (":10", "no user before"),
    ],
)
def test_resolve_errors(etc: str, user: str, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        resolve(user, etc)


def test_missing_files_mean_numeric_only(tmp_path: Path) -> None:
    assert resolve("5:6", str(tmp_path)) == Credentials(5, 6, (6,), "/")
    with pytest.raises(SandboxError):
        resolve("root", str(tmp_path))
