"""Golden cache keys: the key of every step of a set of recipes, pinned.

A key names a step's result in every store that ever ran it. If a change to the engine
changes a key, old stores would hand out results made under the old meaning (or a rebuild
would miss for no reason); such a change must come with a KEY_VERSION bump, which the test
enforces: the golden file records the KEY_VERSION its keys were made with.

Refresh (after bumping KEY_VERSION, or after changing a recipe of this set):

    UPDATE_GOLDEN=1 PYTHONPATH=. python -m pytest -q tests/engine/test_cachekey_golden.py

It prints the diff, and refuses to rewrite keys of unchanged recipes under the same version.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from builder.engine.cachekey import KEY_VERSION
from builder.image.config import ContainerConfig
from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import Files, add_image, make_context, run_build

GOLDEN = Path(__file__).parent / "golden" / "cache_keys.json"
REFRESH = "UPDATE_GOLDEN=1 PYTHONPATH=. python -m pytest -q tests/engine/test_cachekey_golden.py"

PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
BASE: dict[str, str | bytes | None] = {
    "etc/": None,
    "etc/passwd": PASSWD,
    "etc/group": "root:x:0:\napp:x:1000:\n",
    "usr/": None,
    "usr/share/": None,
    "usr/share/doc": "base image\n",
}
PARENT_CONFIG = ContainerConfig(
    env=("PATH=/usr/bin:/bin",), on_build=("COPY app.txt /app/", "RUN echo onbuild")
)


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_000_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    recipe: str
    files: Files = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "config-only": Case(
        "FROM scratch\n"
        "ARG V=1\n"
        "ENV A=$V B=two\n"
        'LABEL org.example.v=$V "x y"=z\n'
        "USER 1000:1000\n"
        'SHELL ["/bin/ash", "-c"]\n'
        "CMD serve --port 80\n"
        'ENTRYPOINT ["tini", "--"]\n'
        "EXPOSE 80 53/udp\n"
        "VOLUME /data\n"
        "STOPSIGNAL SIGQUIT\n"
        "HEALTHCHECK --interval=30s --retries=2 CMD check\n"
        "ONBUILD RUN echo child\n"
        "MAINTAINER someone\n"
    ),
    "run-forms": Case(
        "FROM scratch\n"
        "ENV PATH=/opt/bin:/bin\n"
        "RUN echo shell form\n"
        'RUN ["/bin/echo", "exec", "form"]\n'
        "RUN <<EOF\necho heredoc\nEOF\n"
        "RUN --network=host echo online\n"
        "USER 1000\n"
        "RUN echo as a user\n",
        options={"allow": ["network.host"]},  # what --allow network.host gives RUN
    ),
    "run-mounts": Case(
        "FROM scratch\n"
        "RUN --mount=type=bind,source=src,target=/src echo bind\n"
        "RUN --mount=type=cache,target=/root/.cache,id=pkgs echo cache\n"
        "RUN --mount=type=tmpfs,target=/tmp echo tmpfs\n"
        "RUN --mount=type=secret,id=token echo secret\n",
        {"src/a.c": "int a;\n", "src/b.c": "int b;\n"},
        {"secrets": {"token": "s3cret"}},
    ),
    "copy": Case(
        "FROM base\n"
        "COPY . /app/\n"
        "COPY --chmod=0755 bin/tool /usr/local/bin/\n"
        "COPY --chown=app:app conf/*.ini /etc/app/\n"
        "COPY <<EOF /etc/motd\nhello\nEOF\n"
        "COPY docs /usr/share/help\n",
        {
            "bin/tool": "#!/bin/sh\n",
            "conf/a.ini": "a=1\n",
            "conf/b.ini": "b=2\n",
            "conf/skip.txt": "no\n",
            "docs/readme": "read me\n",
        },
    ),
    "add": Case(
        "FROM scratch\nADD pkg.tar /opt/pkg/\nADD notes.txt /opt/\n",
        {"pkg.tar": _tar({"lib/a": b"A", "lib/b": b"B"}), "notes.txt": "n\n"},
    ),
    "workdir": Case(
        "FROM base\nWORKDIR /srv\nWORKDIR app\nUSER app\nWORKDIR /home/app/data\nWORKDIR /etc\n"
    ),
    "multi-stage": Case(
        "FROM scratch AS build\n"
        "COPY src /src\n"
        "RUN make -C /src\n"
        "FROM build AS test\n"
        "RUN make -C /src test\n"
        "FROM base\n"
        "COPY --from=build /src /opt/src\n"
        "COPY --from=build /src/a.c /opt/one.c\n"
        "COPY --from=0 /src/*.c /opt/c/\n"
        "COPY --from=base /etc/passwd /etc/passwd.orig\n",
        {"src/a.c": "int a;\n", "src/b.c": "int b;\n"},
    ),
    "args": Case(
        "ARG TAG=latest\n"
        "ARG DEST=/opt\n"
        "FROM base\n"
        "ARG DEST\n"
        "ARG MODE=debug\n"
        "COPY f $DEST/\n"
        "RUN echo $MODE\n"
        "ENV MODE=$MODE\n",
        {"f": "f\n"},
        {"build_args": {"MODE": "release"}},
    ),
    "dockerignore": Case(
        "FROM scratch\nCOPY . /ctx/\n",
        {
            ".dockerignore": "*.log\ncache/\n!cache/keep\n",
            "a": "a\n",
            "x.log": "x\n",
            "cache/junk": "j\n",
            "cache/keep": "k\n",
        },
    ),
    "onbuild-trigger": Case("FROM parent\nRUN echo after\n", {"app.txt": "app\n"}),
}


def _inputs(case: Case) -> str:
    """What a case's keys are made from, as the test defines it: a change to it may change
    the keys without a KEY_VERSION bump."""
    files = {k: v if isinstance(v, str) else v.hex() for k, v in case.files.items()}
    text = json.dumps([case.recipe, files, case.options, BASE, repr(PARENT_CONFIG)])
    return hashlib.sha256(text.encode()).hexdigest()


def build_case(
    name: str, case: Case, root: Path, monkeypatch: pytest.MonkeyPatch, mtime: int | None
) -> list[tuple[str, str]]:
    """The (instruction, key) of every step of CASE, built in a new store under ROOT."""
    store = Store.open(root / "store")
    add_image(store, "base", BASE)
    add_image(store, "parent", BASE, PARENT_CONFIG)
    context = make_context(root / "context", case.recipe, case.files)
    if mtime is not None:
        for dirpath, dirnames, filenames in os.walk(context):
            for entry in (dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)):
                os.utime(entry, (mtime, mtime), follow_symlinks=False)
    options = dict(case.options)
    if "secrets" in options:
        options["secrets"] = {ident: v.encode() for ident, v in options["secrets"].items()}
    if "allow" in options:
        options["allow"] = frozenset(options["allow"])
    fake = FakeExecutor(default=Effect(files={f"/out/{name}": "x"}))
    return run_build(store, context, fake, monkeypatch, **options).keys


def all_keys(
    root: Path, monkeypatch: pytest.MonkeyPatch, mtime: int | None = None
) -> dict[str, Any]:
    return {
        "key_version": KEY_VERSION,
        "recipes": {
            name: {
                "inputs": _inputs(case),
                "steps": [  # "KEY INSTRUCTION": one line each, for readable diffs
                    f"{key} {text}"
                    for text, key in build_case(name, case, root / name, monkeypatch, mtime)
                ],
            }
            for name, case in CASES.items()
        },
    }


def _text(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=1, sort_keys=True) + "\n"


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    lines = difflib.unified_diff(
        _text(old).splitlines(keepends=True),
        _text(new).splitlines(keepends=True),
        "golden",
        "now",
    )
    return "".join(lines)


def _changed_without_bump(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if old.get("key_version") != new["key_version"]:
        return []
    before = old.get("recipes", {})
    return [
        name
        for name, now in new["recipes"].items()
        if name in before
        and before[name]["inputs"] == now["inputs"]
        and before[name]["steps"] != now["steps"]
    ]


def test_cache_keys_match_the_golden_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = all_keys(tmp_path, monkeypatch)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("UPDATE_GOLDEN"):
        stale = _changed_without_bump(golden, now)
        if stale:
            pytest.fail(
                f"cache keys changed for {', '.join(stale)} under the same KEY_VERSION"
                f" {KEY_VERSION!r}: bump KEY_VERSION in builder/engine/cachekey.py first\n"
                + _diff(golden, now),
                pytrace=False,
            )
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(_text(now))
        with capsys.disabled():
            print(f"\n{GOLDEN} refreshed:\n{_diff(golden, now) or '(no change)'}")
        return
    if golden.get("key_version") != KEY_VERSION:
        pytest.fail(
            f"KEY_VERSION is {KEY_VERSION!r} but the golden keys were made with"
            f" {golden.get('key_version')!r}: refresh the golden keys with {REFRESH}",
            pytrace=False,
        )
    if now != golden:
        pytest.fail(
            "cache keys changed: if a step's meaning changed, bump KEY_VERSION in"
            f" builder/engine/cachekey.py and refresh the golden keys with {REFRESH}"
            " (if a recipe of this test changed, just refresh)\n" + _diff(golden, now),
            pytrace=False,
        )


def test_the_golden_file_pins_every_step_of_every_recipe() -> None:
    golden = json.loads(GOLDEN.read_text())
    assert golden["key_version"] == KEY_VERSION
    assert set(golden["recipes"]) == set(CASES)
    for name, recorded in golden["recipes"].items():
        assert recorded["inputs"] == _inputs(CASES[name]), f"{name}: refresh with {REFRESH}"
        assert recorded["steps"], name
        for line in recorded["steps"]:  # ARG keeps its parent's key: the base image's
            key = line.split(" ")[0]
            assert len(key) == 64 or key == "scratch" or key.startswith("image:sha256:"), line


def test_keys_depend_on_neither_where_the_context_is_nor_its_mtimes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = all_keys(tmp_path / "one", monkeypatch)
    elsewhere = all_keys(tmp_path / "a" / "much" / "longer" / "path", monkeypatch, 123_456_789)
    assert elsewhere == here
