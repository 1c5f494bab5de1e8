"""root/layers from several threads: stages built at once that need the same base layer
unpack it once, the others waiting for it (no second unpack, no scratch left)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import builder.layer.apply as apply
from builder.store import Store
from tests.store.support import make_image


def test_threads_that_need_one_layer_unpack_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "s")
    (layer,) = make_image(store, tmp_path, "hello").layers
    unpacks: list[int] = []
    real = apply.unpack_layer

    def slow(*args: Any, **kwargs: Any) -> Any:
        unpacks.append(threading.get_ident())
        time.sleep(0.3)  # the other threads have looked for the layer by now
        return real(*args, **kwargs)

    monkeypatch.setattr(apply, "unpack_layer", slow)
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: store.layers.get(layer.blob, layer.diff_id), range(3)))
    assert len(unpacks) == 1
    assert paths == [store.paths.layer(layer.diff_id)] * 3
    assert (paths[0] / "etc" / "msg").read_text() == "hello"
    assert list(store.paths.tmp.iterdir()) == []
