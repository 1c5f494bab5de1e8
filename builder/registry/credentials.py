"""Registry credentials in docker's config.json, read and written as docker does.

The file is $DOCKER_CONFIG/config.json, else ~/.docker/config.json. For a registry host:
`credHelpers[host]` names a `docker-credential-NAME` helper, else `credsStore` names one for
every host, else `auths[host]` holds base64 "user:password" in `auth` (or an `identitytoken`).
Docker Hub's key is "https://index.docker.io/v1/"; other hosts are keyed "host[:port]", and
keys written with a scheme or path ("https://host/v1/") count for their host, as docker reads them.

A helper speaks on stdin/stdout: `get` and `erase` read the server URL; `store` reads
{"ServerURL", "Username", "Secret"}; `get` answers {"Username", "Secret"}, Username "<token>"
meaning Secret is an identity token. A broken config.json is a UsageError (it is the user's
file, like builder.toml); a missing or failing helper is a RegistryError.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

from builder.errors import RegistryError, UsageError
from builder.record import dataclass
from builder.store.atomic import write_atomic

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_TOKEN_USERNAME = "<token>"  # the helper protocol's username for an identity token
_NOT_FOUND = "credentials not found"  # docker-credential-helpers' "... in native keychain"
_SECRET_FIELDS = frozenset({"auth", "username", "password", "identitytoken"})  # of an auths entry
_HELPER_TIMEOUT = 60.0  # seconds: a helper waiting on a locked keychain must not hang us


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str  # or a refresh token when identity_token is set
    identity_token: str | None = None  # an OAuth2 refresh token (docker login via a browser)


def config_path() -> Path:
    folder = os.environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else Path.home() / ".docker") / "config.json"


def server_key(host: str) -> str:
    """The key docker files HOST's credentials under (and the URL it gives helpers)."""
    return DOCKER_HUB_KEY if _registry(host) == "docker.io" else host


def credentials_for(host: str) -> Credentials | None:
    """The stored credentials for a registry host (docker.io is looked up as docker does)."""
    path = config_path()
    config = _read(path)
    helper = _helper_for(config, host, path)
    if helper is not None:
        return _helper_get(helper, server_key(host))
    entry = _auth_entry(config, host, path)
    return None if entry is None else _decode(entry[1], entry[0], path)


def store_credentials(host: str, credentials: Credentials) -> str:
    """Keep credentials for HOST (a helper if one is configured, else config.json); returns
    where they went, for the message `builder login` prints."""
    path = config_path()
    config = _read(path)
    key = server_key(host)
    helper = _helper_for(config, host, path)
    if helper is not None:
        token = credentials.identity_token
        payload = {
            "ServerURL": key,
            "Username": _TOKEN_USERNAME if token else credentials.username,
            "Secret": token or credentials.password,
        }
        _run_helper(helper, "store", json.dumps(payload), key)
        return f"the credential helper docker-credential-{helper}"
    auths = config.setdefault("auths", {})
    old = auths.get(key)
    # Keep what else the entry holds (docker's "email"), never an old secret.
    entry = (
        {k: v for k, v in old.items() if k not in _SECRET_FIELDS} if isinstance(old, dict) else {}
    )
    if credentials.identity_token:
        entry["identitytoken"] = credentials.identity_token
        if credentials.username:
            entry["auth"] = _encode(credentials.username, "")
    else:
        entry["auth"] = _encode(credentials.username, credentials.password)
    auths[key] = entry
    _write(path, config)
    return str(path)


def erase_credentials(host: str) -> bool:
    """Forget HOST's credentials; False when there were none.

    Like `docker logout`, this asks the helper to erase them and also drops every `auths`
    entry for HOST (with or without a scheme) from the file.
    """
    path = config_path()
    config = _read(path)
    key = server_key(host)
    helper = _helper_for(config, host, path)
    erased = False
    if helper is not None:
        erased = _run_helper(helper, "erase", key, key) is not None
    auths = config.get("auths", {})
    removed = [auths.pop(k) for k in [k for k in auths if _registry(k) == _registry(host)]]
    if removed:
        _write(path, config)
    return erased or any(isinstance(entry, dict) and _has_secret(entry) for entry in removed)


def _has_secret(entry: dict[str, Any]) -> bool:
    return any(entry.get(field) for field in _SECRET_FIELDS)


# -- config.json ------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8"
        raise UsageError(f"cannot read docker config {path}: {reason}") from None
    if not text.strip():
        return {}  # docker treats an empty file as an empty config
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"docker config {path} is not valid JSON: {err.msg} (line {err.lineno})"
        ) from None
    if not isinstance(config, dict):
        raise UsageError(f"docker config {path} is not a JSON object")
    for field in ("auths", "credHelpers"):
        table = config.get(field, {})
        if not isinstance(table, dict):
            raise UsageError(f"docker config {path}: `{field}` must be an object")
    if not all(isinstance(v, str) for v in config.get("credHelpers", {}).values()):
        raise UsageError(f"docker config {path}: `credHelpers` must map hosts to helper names")
    if not isinstance(config.get("credsStore", ""), str):
        raise UsageError(f"docker config {path}: `credsStore` must be a helper name")
    return config


def _write(path: Path, config: dict[str, Any]) -> None:
    """Replace the file whole (its other keys as they were), mode 0600, in a 0700 folder."""
    target = path.resolve() if path.is_symlink() else path  # keep a symlinked config a link
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = (json.dumps(config, indent="\t") + "\n").encode()
    try:
        write_atomic(target, data, tmp_dir=target.parent, mode=0o600)
    except OSError as err:
        raise UsageError(f"cannot write docker config {target}: {err.strerror}") from None


def _registry(key: str) -> str:
    """The registry a config key names: scheme and path cut off (as docker's
    ConvertToHostname does), lower case, Docker Hub's names as one."""
    host = key.split("://", 1)[1] if "://" in key else key
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB_NAMES else host


def _lookup(table: dict[str, Any], host: str) -> tuple[str, Any] | None:
    """HOST's entry: under its own key first, else under a key naming the same registry."""
    key = server_key(host)
    if key in table:
        return key, table[key]
    for written, value in table.items():
        if _registry(written) == _registry(host):
            return written, value
    return None


def _helper_for(config: dict[str, Any], host: str, path: Path) -> str | None:
    found = _lookup(config.get("credHelpers", {}), host)
    name = found[1] if found else config.get("credsStore", "")
    if not name:
        return None
    if "/" in name or any(c.isspace() for c in name):
        raise UsageError(f"docker config {path}: {name!r} is not a credential helper name")
    return str(name)


def _auth_entry(config: dict[str, Any], host: str, path: Path) -> tuple[str, Any] | None:
    found = _lookup(config.get("auths", {}), host)
    if found is not None and not isinstance(found[1], dict):
        raise UsageError(f"docker config {path}: auths[{found[0]!r}] must be an object")
    return found


def _encode(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def _decode(entry: dict[str, Any], key: str, path: Path) -> Credentials | None:
    username, password = entry.get("username") or "", entry.get("password") or ""
    if entry.get("auth"):
        try:
            pair = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            pair = ""
        if ":" not in pair:
            raise UsageError(
                f"docker config {path}: auths[{key!r}].auth is not base64 of user:password"
            )
        username, password = pair.split(":", 1)
    token = entry.get("identitytoken") or None
    if not isinstance(username, str) or not isinstance(password, str):
        raise UsageError(f"docker config {path}: auths[{key!r}] has a non-string field")
    if token is not None:
        if not isinstance(token, str):
            raise UsageError(f"docker config {path}: auths[{key!r}].identitytoken must be text")
        return Credentials(username, token, identity_token=token)
    if not username and not password:
        return None  # docker leaves an empty entry behind for hosts kept in a helper
    return Credentials(username, password)


# -- docker-credential-* helpers --------------------------------------------------------------


def _helper_get(helper: str, server: str) -> Credentials | None:
    out = _run_helper(helper, "get", server, server)
    if out is None:
        return None
    try:
        answer = json.loads(out)
        username, secret = answer.get("Username", ""), answer.get("Secret", "")
        if not isinstance(username, str) or not isinstance(secret, str):
            raise TypeError
    except (json.JSONDecodeError, AttributeError, TypeError):
        raise RegistryError(
            f"credential helper docker-credential-{helper} sent no credentials JSON for "
            f"{server}: {_first_line(out)}"
        ) from None
    if username == _TOKEN_USERNAME:
        return Credentials("", secret, identity_token=secret)
    if not username and not secret:
        return None
    return Credentials(username, secret)


def _run_helper(helper: str, action: str, stdin: str, server: str) -> str | None:
    """The helper's answer, or None for its "credentials not found"."""
    import subprocess  # here: a push without a helper does not pay for its import

    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(
            [program, action],
            input=stdin.encode(),
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise RegistryError(
            f"credential helper {program} (named in {config_path()}) is not on PATH"
        ) from None
    except subprocess.TimeoutExpired:
        raise RegistryError(
            f"credential helper {program} {action} gave no answer in {_HELPER_TIMEOUT:.0f}s"
        ) from None
    except OSError as err:
        raise RegistryError(f"cannot run credential helper {program}: {err.strerror}") from None
    out = done.stdout.decode(errors="replace")
    if done.returncode == 0:
        return out
    said = _first_line(out) or _first_line(done.stderr.decode(errors="replace"))
    if _NOT_FOUND in said.lower():
        return None
    raise RegistryError(
        f"credential helper {program} {action} for {server} failed "
        f"(exit {done.returncode}): {said or 'no message'}"
    )


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
