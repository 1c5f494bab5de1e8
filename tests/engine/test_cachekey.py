"""cachekey.chain: what a key is made of."""

from __future__ import annotations

import pytest

from builder.engine import cachekey


def test_a_key_is_the_digest_of_version_parent_kind_and_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = cachekey.chain("parent", "RUN", {"argv": ["true"]})
    assert len(key) == 64 and key == cachekey.chain("parent", "RUN", {"argv": ["true"]})
    others = {
        cachekey.chain("other", "RUN", {"argv": ["true"]}),
        cachekey.chain("parent", "COPY", {"argv": ["true"]}),
        cachekey.chain("parent", "RUN", {"argv": ["false"]}),
    }
    assert key not in others and len(others) == 3
    monkeypatch.setattr(cachekey, "KEY_VERSION", "builder-cache-test")
    assert cachekey.chain("parent", "RUN", {"argv": ["true"]}) != key


def test_a_payloads_dict_order_does_not_matter() -> None:
    assert cachekey.chain("p", "K", {"a": 1, "b": 2}) == cachekey.chain("p", "K", {"b": 2, "a": 1})
