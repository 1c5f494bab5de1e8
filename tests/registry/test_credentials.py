"""docker's config.json: auths, credsStore and credHelpers, with real config files in tmp
dirs ($DOCKER_CONFIG) and real docker-credential-* helper programs (shell scripts on PATH)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from builder.errors import RegistryError, UsageError
from builder.registry.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    config_path,
    credentials_for,
    erase_credentials,
    store_credentials,
)

# A helper that keeps each server's credentials in a file under $HELPER_STATE, logs every
# call, and answers as docker-credential-helpers' programs do (not found: that message on
# stdout, exit 1).
TESTHELPER = r"""#!/bin/sh
set -e
input=$(cat)
echo "$1 $input" >> "$HELPER_STATE/calls"
if [ "$1" = store ]; then
  server=$(printf %s "$input" | jq -r .ServerURL)
else
  server=$input
fi
file="$HELPER_STATE/$(printf %s "$server" | sha256sum | cut -c1-16)"
case "$1" in
  store) printf %s "$input" > "$file" ;;
  get|erase)
    if [ ! -f "$file" ]; then echo "credentials not found in native keychain"; exit 1; fi
    if [ "$1" = get ]; then cat "$file"; else rm "$file"; fi ;;
  *) echo "unknown action $1"; exit 1 ;;
esac
"""
FAILING = '#!/bin/sh\ncat >/dev/null\necho "error: the keychain is locked"\necho more\nexit 3\n'
FAILING_QUIETLY = '#!/bin/sh\ncat >/dev/null\necho "pass: gpg agent gone" >&2\nexit 1\n'
GARBAGE = "#!/bin/sh\ncat >/dev/null\necho 'not json'\n"


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$DOCKER_CONFIG in a tmp dir (the folder not made yet), helpers on PATH."""
    folder = tmp_path / "docker"
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in [
        ("testhelper", TESTHELPER),
        ("failing", FAILING),
        ("quiet", FAILING_QUIETLY),
        ("garbage", GARBAGE),
    ]:
        program = bin_dir / f"docker-credential-{name}"
        program.write_text(script)
        program.chmod(0o755)
    state = tmp_path / "helper-state"
    state.mkdir()
    monkeypatch.setenv("HELPER_STATE", str(state))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return folder / "config.json"


def _write(path: Path, config: object) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(config))


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _helper_calls(tmp_path: Path) -> list[str]:
    calls = tmp_path / "helper-state" / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


# -- where the file is ------------------------------------------------------------------------


def test_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    assert config_path() == tmp_path / "d/config.json"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path() == tmp_path / ".docker/config.json"


def test_no_file_no_credentials(docker_config: Path) -> None:
    assert credentials_for("r.example") is None
    assert erase_credentials("r.example") is False
    assert not docker_config.exists()


# -- auths ------------------------------------------------------------------------------------


def test_auths_basic(docker_config: Path) -> None:
    _write(docker_config, {"auths": {"r.example:5000": {"auth": _auth("ann", "pa:ss")}}})
    assert credentials_for("r.example:5000") == Credentials("ann", "pa:ss")
    assert credentials_for("r.example") is None  # another port is another registry


def test_auths_identity_token(docker_config: Path) -> None:
    entry = {"auth": _auth("ann", ""), "identitytoken": "refresh-me"}
    _write(docker_config, {"auths": {"r.example": entry}})
    assert credentials_for("r.example") == Credentials("ann", "refresh-me", "refresh-me")


def test_auths_plain_fields_and_empty_entries(docker_config: Path) -> None:
    _write(
        docker_config,
        {"auths": {"a.example": {"username": "u", "password": "p"}, "b.example": {}}},
    )
    assert credentials_for("a.example") == Credentials("u", "p")
    assert credentials_for("b.example") is None  # what docker leaves for a helper's host


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_is_looked_up_under_its_v1_key(docker_config: Path, host: str) -> None:
    _write(
        docker_config,
        {"auths": {DOCKER_HUB_KEY: {"auth": _auth("hub", "pw")}, "r.example": {}}},
    )
    assert credentials_for(host) == Credentials("hub", "pw")
    assert credentials_for("r.example") is None


def test_docker_hub_under_a_plain_key(docker_config: Path) -> None:
    _write(docker_config, {"auths": {"docker.io": {"auth": _auth("hub", "pw")}}})
    assert credentials_for("docker.io") == Credentials("hub", "pw")


@pytest.mark.parametrize("key", ["https://r.example:5000", "http://r.example:5000/v2/"])
def test_keys_written_with_a_scheme(docker_config: Path, key: str) -> None:
    _write(docker_config, {"auths": {key: {"auth": _auth("old", "style")}}})
    assert credentials_for("r.example:5000") == Credentials("old", "style")


def test_the_exact_key_wins_over_a_scheme_key(docker_config: Path) -> None:
    auths = {
        "https://r.example": {"auth": _auth("old", "1")},
        "r.example": {"auth": _auth("new", "2")},
    }
    _write(docker_config, {"auths": auths})
    assert credentials_for("r.example") == Credentials("new", "2")


# -- writing config.json ----------------------------------------------------------------------


def test_store_creates_the_file_private(docker_config: Path) -> None:
    where = store_credentials("r.example:5000", Credentials("ann", "secret"))
    assert where == str(docker_config)
    assert stat.S_IMODE(docker_config.stat().st_mode) == 0o600
    assert stat.S_IMODE(docker_config.parent.stat().st_mode) == 0o700
    config = json.loads(docker_config.read_text())
    assert config == {"auths": {"r.example:5000": {"auth": _auth("ann", "secret")}}}
    assert credentials_for("r.example:5000") == Credentials("ann", "secret")


def test_store_keeps_every_other_key(docker_config: Path) -> None:
    before = {
        "auths": {
            "other.example": {"auth": _auth("o", "p")},
            "r.example": {"auth": _auth("old", "pw"), "email": "a@example.com"},
        },
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        "currentContext": "remote",
    }
    _write(docker_config, before)
    docker_config.chmod(0o644)
    inode = docker_config.stat().st_ino
    store_credentials("r.example", Credentials("ann", "new"))
    # A new file renamed over the old one (a reader never sees half a file), not rewritten.
    assert docker_config.stat().st_ino != inode
    after = json.loads(docker_config.read_text())
    expected = json.loads(json.dumps(before))
    expected["auths"]["r.example"] = {"email": "a@example.com", "auth": _auth("ann", "new")}
    assert after == expected
    assert list(after) == list(before)  # the keys keep their order
    assert stat.S_IMODE(docker_config.stat().st_mode) == 0o600
    assert sorted(p.name for p in docker_config.parent.iterdir()) == ["config.json"]


def test_store_docker_hub_under_its_v1_key(docker_config: Path) -> None:
    store_credentials("docker.io", Credentials("hub", "pw"))
    assert json.loads(docker_config.read_text())["auths"] == {
        DOCKER_HUB_KEY: {"auth": _auth("hub", "pw")}
    }


def test_store_an_identity_token(docker_config: Path) -> None:
    store_credentials("r.example", Credentials("ann", "tok", identity_token="tok"))
    entry = json.loads(docker_config.read_text())["auths"]["r.example"]
    assert entry == {"identitytoken": "tok", "auth": _auth("ann", "")}
    assert credentials_for("r.example") == Credentials("ann", "tok", "tok")


def test_store_through_a_symlinked_config(docker_config: Path, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker.json"
    _write(real, {"auths": {}})
    docker_config.parent.mkdir()
    docker_config.symlink_to(real)
    store_credentials("r.example", Credentials("a", "b"))
    assert docker_config.is_symlink()
    assert json.loads(real.read_text())["auths"]["r.example"] == {"auth": _auth("a", "b")}


def test_erase_from_auths(docker_config: Path) -> None:
    auths = {
        "r.example": {"auth": _auth("a", "b")},
        "https://r.example": {"auth": _auth("c", "d")},
        "keep.example": {"auth": _auth("e", "f")},
    }
    _write(docker_config, {"auths": auths, "other": 1})
    assert erase_credentials("r.example") is True
    after = json.loads(docker_config.read_text())
    assert after == {"auths": {"keep.example": {"auth": _auth("e", "f")}}, "other": 1}
    assert erase_credentials("r.example") is False


# -- credential helpers -----------------------------------------------------------------------


def test_cred_helper_store_get_erase(docker_config: Path, tmp_path: Path) -> None:
    _write(docker_config, {"credHelpers": {"r.example:5000": "testhelper"}})
    before = docker_config.read_bytes()
    where = store_credentials("r.example:5000", Credentials("ann", "s3cret"))
    assert where == "the credential helper docker-credential-testhelper"
    assert docker_config.read_bytes() == before  # the secret went to the helper only
    stored = json.loads(_helper_calls(tmp_path)[0].split(" ", 1)[1])
    assert stored == {"ServerURL": "r.example:5000", "Username": "ann", "Secret": "s3cret"}
    assert credentials_for("r.example:5000") == Credentials("ann", "s3cret")
    assert erase_credentials("r.example:5000") is True
    assert credentials_for("r.example:5000") is None  # "not found" is no credentials
    assert erase_credentials("r.example:5000") is False
    actions = [call.split(" ", 1)[0] for call in _helper_calls(tmp_path)]
    assert actions == ["store", "get", "erase", "get", "erase"]


def test_creds_store_serves_every_host_and_cred_helpers_win(
    docker_config: Path, tmp_path: Path
) -> None:
    _write(
        docker_config,
        {
            "credsStore": "testhelper",
            "credHelpers": {"special.example": "failing"},
            "auths": {"r.example": {"auth": _auth("file", "ignored")}},
        },
    )
    # With a helper configured, the file's auth is not read (as docker does).
    assert credentials_for("r.example") is None
    store_credentials("r.example", Credentials("ann", "pw"))
    assert credentials_for("r.example") == Credentials("ann", "pw")
    with pytest.raises(RegistryError, match="docker-credential-failing"):
        credentials_for("special.example")


def test_helper_sees_docker_hubs_v1_key(docker_config: Path, tmp_path: Path) -> None:
    _write(docker_config, {"credHelpers": {DOCKER_HUB_KEY: "testhelper"}})
    store_credentials("docker.io", Credentials("hub", "pw"))
    assert credentials_for("registry-1.docker.io") == Credentials("hub", "pw")
    assert _helper_calls(tmp_path)[1] == f"get {DOCKER_HUB_KEY}"


def test_helper_identity_token(docker_config: Path, tmp_path: Path) -> None:
    _write(docker_config, {"credsStore": "testhelper"})
    store_credentials("r.example", Credentials("ann", "tok", identity_token="tok"))
    stored = json.loads(_helper_calls(tmp_path)[0].split(" ", 1)[1])
    assert (stored["Username"], stored["Secret"]) == ("<token>", "tok")
    assert credentials_for("r.example") == Credentials("", "tok", identity_token="tok")


def test_erase_with_a_helper_also_drops_file_entries(docker_config: Path) -> None:
    _write(
        docker_config,
        {"credsStore": "testhelper", "auths": {"r.example": {"auth": _auth("a", "b")}}},
    )
    assert erase_credentials("r.example") is True  # the helper had none; the file had some
    assert json.loads(docker_config.read_text()) == {"credsStore": "testhelper", "auths": {}}


def test_a_missing_helper_is_a_registry_error(docker_config: Path) -> None:
    _write(docker_config, {"credsStore": "absent"})
    with pytest.raises(RegistryError) as caught:
        credentials_for("r.example")
    assert str(caught.value) == (
        f"credential helper docker-credential-absent (named in {docker_config}) is not on PATH"
    )


@pytest.mark.parametrize(
    ("helper", "said"),
    [("failing", "error: the keychain is locked"), ("quiet", "pass: gpg agent gone")],
)
def test_a_failing_helper_says_what_it_said(docker_config: Path, helper: str, said: str) -> None:
    _write(docker_config, {"credsStore": helper})
    for action in (
        lambda: credentials_for("r.example"),
        lambda: store_credentials("r.example", Credentials("a", "b")),
        lambda: erase_credentials("r.example"),
    ):
        with pytest.raises(RegistryError) as caught:
            action()
        message = str(caught.value)
        assert f"docker-credential-{helper}" in message and message.endswith(said)
        assert "\n" not in message


def test_a_helper_answering_garbage(docker_config: Path) -> None:
    _write(docker_config, {"credsStore": "garbage"})
    with pytest.raises(RegistryError, match=r"sent no credentials JSON.*not json"):
        credentials_for("r.example")


# -- a broken config.json: a UsageError naming the file ---------------------------------------


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"auths": {', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"auths": []}', "`auths` must be an object"),
        ('{"credHelpers": {"h": 1}}', "`credHelpers` must map"),
        ('{"credsStore": 1}', "`credsStore` must be"),
        ('{"auths": {"h": "x"}}', "auths['h'] must be an object"),
        ('{"auths": {"h": {"auth": "bm9jb2xvbg=="}}}', "is not base64 of user:password"),
        ('{"auths": {"h": {"auth": "%%%"}}}', "is not base64 of user:password"),
        ('{"credsStore": "../evil"}', "is not a credential helper name"),
    ],
)
def test_a_broken_config_is_a_usage_error(docker_config: Path, text: str, what: str) -> None:
    docker_config.parent.mkdir()
    docker_config.write_text(text)
    with pytest.raises(UsageError) as caught:
        credentials_for("h")
    message = str(caught.value)
    assert str(docker_config) in message and what in message and "\n" not in message


def test_an_empty_file_is_an_empty_config(docker_config: Path) -> None:
    docker_config.parent.mkdir()
    docker_config.write_text("")
    assert credentials_for("r.example") is None
    store_credentials("r.example", Credentials("a", "b"))
    assert credentials_for("r.example") == Credentials("a", "b")
