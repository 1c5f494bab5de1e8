"""The history lines of layer steps, word for word as BuildKit's dockerfile2llb writes them
(see its dockerfile_history_test.go: `COPY foo2 foo3` for a COPY --from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import add_image, image, make_context, run_build


def test_copy_add_and_workdir_lines(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_image(store, "base", {"etc/": None, "etc/passwd": "root:x:0:0::/:/bin/sh\n"})
    fake.on("make", Effect(files={"/out/f": "x"}))
    recipe = (
        "FROM base AS build\n"
        "RUN make\n"
        "FROM base\n"
        "ARG D=dst\n"
        "COPY --chown=0:0 --chmod=640 a $D/\n"
        "COPY --from=build /out/f /g\n"
        "ADD a <<EOF /h/\nhello\nEOF\n"
        "WORKDIR /w\n"
        "WORKDIR /\n"
    )
    context = make_context(tmp_path / "ctx", recipe, {"a": "a\n"})
    built = run_build(store, context, fake, monkeypatch)
    config, _ = image(store, built)
    assert [(h.created_by, h.empty_layer) for h in config.history[1:]] == [
        ("ARG D=dst", True),
        ("COPY --chown=0:0 --chmod=640 a dst/ # buildkit", False),
        ("COPY /out/f /g # buildkit", False),  # never --from
        ("ADD a <<EOF /h/ # buildkit", False),  # heredoc sources after the others
        ("WORKDIR /w", False),
        ("WORKDIR /", True),
    ]
