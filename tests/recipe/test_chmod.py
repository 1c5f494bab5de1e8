"""--chmod's symbolic modes, applied as chmod(1) (and BuildKit's dchapes/mode) apply them."""

from __future__ import annotations

import pytest

from builder.recipe.chmod import ChmodError, parse


@pytest.mark.parametrize(
    ("text", "mode", "is_dir", "expected"),
    [
        ("755", 0o600, False, 0o755),
        ("0", 0o644, True, 0o000),
        ("go-w", 0o666, False, 0o644),
        ("u=rw,g=r,o=r", 0o777, False, 0o644),
        ("a+X", 0o644, False, 0o644),  # no x anywhere: X adds none to a file
        ("a+X", 0o744, False, 0o755),
        ("a+X", 0o124, True, 0o135),  # a directory always gets X
        ("go-w", 0o124, True, 0o104),
        ("u+rw,g+r,o-x,o+w", 0o124, True, 0o766),
        ("+x", 0o644, False, 0o755),
        ("u=rwx,g=rx", 0o000, False, 0o750),
        ("g=u", 0o640, False, 0o660),
        ("u+s,+t", 0o755, False, 0o5755),
        ("o=", 0o777, False, 0o770),
    ],
)
def test_apply(text: str, mode: int, is_dir: bool, expected: int) -> None:
    assert oct(parse(text).apply(mode, is_dir)) == oct(expected)


def test_created_parent_dirs() -> None:
    # BuildKit's testCopyChmod: --chmod=777 makes /parent 0777; a symbolic mode leaves 0755.
    assert parse("777").created_dir_mode == 0o777
    assert parse("go-w").created_dir_mode == 0o755


@pytest.mark.parametrize("text", ["64a", "10000", "9", "u+q", "x+r", "", "u+r,"])
def test_invalid(text: str) -> None:
    with pytest.raises(ChmodError, match="invalid chmod parameter"):
        parse(text)


def test_numeric_wording_is_buildkits() -> None:
    with pytest.raises(ChmodError) as info:
        parse("64a")
    assert str(info.value) == (
        "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
    )
