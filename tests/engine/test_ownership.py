"""COPY --chown names resolved with the sandbox's passwd/group reader (here: the host's
/etc files, which every Debian has root and daemon in; in a build, the image's)."""

from __future__ import annotations

import pytest

from builder.engine.copier import Ownership


def test_names_and_numbers() -> None:
    assert Ownership(None).resolve() == (0, 0)
    assert Ownership("root").resolve() == (0, 0)
    assert Ownership("daemon:root").resolve() == (1, 0)
    assert Ownership("7").resolve() == (7, 7)  # a bare uid is its own group, as BuildKit
    assert Ownership("7:daemon").resolve() == (7, 1)
    assert Ownership("root:12").resolve() == (0, 12)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nosuch", "unable to find user 'nosuch'"), ("0:nosuch", "unable to find group 'nosuch'")],
)
def test_unknown_names(spec: str, message: str) -> None:
    with pytest.raises(LookupError, match=message):
        Ownership(spec).resolve()
