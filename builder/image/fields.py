"""Typed reading of untrusted JSON objects: one error type for every malformed field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FormatError(ValueError):
    """An image JSON document (manifest, index, config, descriptor) is malformed.

    A ValueError: the store wraps it in StoreError, the registry in RegistryError.
    """


def obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FormatError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def opt_str(m: Mapping[str, Any], key: str, what: str) -> str | None:
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FormatError(f"{what}: {key!r} must be a string")
    return value


def req_str(m: Mapping[str, Any], key: str, what: str) -> str:
    value = opt_str(m, key, what)
    if value is None:
        raise FormatError(f"{what}: missing {key!r}")
    return value


def opt_int(m: Mapping[str, Any], key: str, what: str) -> int | None:
    value = m.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python; JSON true is not a size.
    if not isinstance(value, int) or isinstance(value, bool):
        raise FormatError(f"{what}: {key!r} must be an integer")
    return value


def opt_bool(m: Mapping[str, Any], key: str, what: str) -> bool:
    value = m.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FormatError(f"{what}: {key!r} must be a boolean")
    return value


def opt_strs(m: Mapping[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(f"{what}: {key!r} must be a list of strings")
    return tuple(value)


def opt_str_map(m: Mapping[str, Any], key: str, what: str) -> dict[str, str] | None:
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise FormatError(f"{what}: {key!r} must be an object of strings")
    return dict(value)


def opt_keys(m: Mapping[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    """Docker's set-as-object form: {"80/tcp": {}} -> ("80/tcp",)."""
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise FormatError(f"{what}: {key!r} must be an object")
    return tuple(str(k) for k in value)
