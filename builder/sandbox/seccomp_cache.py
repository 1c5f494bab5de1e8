"""Compiled seccomp programs kept on disk, so that a run does not compile its profile again.

Compiling Docker's default profile through libseccomp (ctypes, ~380 rules) cost 15-25 ms
of every `builder run` (issue 9). The program depends only on:
  the profile's bytes, the capability set, the machine, the kernel release (a rule's
  minKernel), and the libseccomp that compiled it;
the first four make the file's name (a sha256), the last is checked on load: the file
records the library's path and stat, and a different or missing library (an upgrade) is a
miss. A hit neither imports ctypes nor parses the profile.

Two places keep them: the store's dir, and as root (of the host, not of a rootless user
namespace) the host's `HOST_DIR`, so a fresh store (a CI job's) compiles nothing a build
on this host compiled before; a store's miss that the host's dir serves is copied into
the store's. The host's dir is used only while it is root's and writable by root alone:
the program confines every RUN.

A file is `MAGIC`, one JSON line (library, program sha256), then the program. A file that
does not read back whole and checked (truncated, edited, another format) is a miss and is
written again. Writes are atomic (temp file + rename); failing to write is not an error,
the program was compiled anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

DEFAULT_FILE = Path(__file__).with_name("seccomp_default.json")
HOST_DIR = Path("/var/cache/builder/seccomp")
MAGIC = b"builder-seccomp-program 1\n"
_BPF_INSTRUCTION = 8  # struct sock_filter
LAYOUT = "tree"
_compiled: dict[str, bytes] = {}  # key -> program, in this process


def program(profile: str, caps: frozenset[str], directory: Path | None) -> bytes:
    """The BPF program of `profile` ("default", else a file in Docker's format) for a
    process holding `caps`; from `directory` when compiled there before (None: no cache)."""
    path = DEFAULT_FILE if profile == "default" else Path(profile)
    text = _read_profile(path)
    name = key(text, caps)
    compiled = _compiled.get(name)  # a build's RUN steps: once per process, even uncached
    entry = f"{name}.bpf"
    if compiled is None and directory is not None:
        compiled = load(directory / entry)
    host = _host_dir() if compiled is None else None
    if compiled is None and host is not None:
        compiled = load(host / entry)
        if compiled is not None and directory is not None:
            with contextlib.suppress(OSError):  # the bytes as checked: no libseccomp load
                _put(directory / entry, (host / entry).read_bytes())
    if compiled is None:
        compiled = _compile(text, path, caps)
        for where in (directory, host):
            if where is not None:
                with contextlib.suppress(OSError):
                    save(where / entry, compiled)
    _compiled[name] = compiled
    return compiled


def _host_dir() -> Path | None:
    """HOST_DIR for host root while only root can write it (None: not host root, or a dir
    someone else could have written a program into)."""
    from builder.sandbox.idmap import in_initial_user_namespace

    if os.geteuid() != 0 or not in_initial_user_namespace():
        return None
    try:
        st = os.stat(HOST_DIR)
    except FileNotFoundError:
        return HOST_DIR  # save makes it, 0700
    except OSError:
        return None
    return HOST_DIR if st.st_uid == 0 and not st.st_mode & 0o022 else None


def key(text: bytes, caps: frozenset[str]) -> str:
    uname = os.uname()
    h = hashlib.sha256(MAGIC)
    # LAYOUT: the compiler's choices (the tree dispatch): a program cached before is a miss.
    for part in (LAYOUT, uname.machine, uname.release, *sorted(caps)):
        h.update(part.encode() + b"\0")
    h.update(text)
    return h.hexdigest()


def load(entry: Path) -> bytes | None:
    """The program in `entry`, or None when it is missing, damaged or from another
    libseccomp than the one this process would load."""
    try:
        with open(entry, "rb") as f:
            data = f.read()
        if not data.startswith(MAGIC):
            return None
        line, sep, body = data[len(MAGIC) :].partition(b"\n")
        header = json.loads(line)
        if not sep or not body or len(body) % _BPF_INSTRUCTION:
            return None
        if hashlib.sha256(body).hexdigest() != header["sha256"]:
            return None
        if header["library"] != _library_identity(header["library"]["path"]):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return body


def save(entry: Path, compiled: bytes) -> None:
    from builder.sandbox import libseccomp  # loaded already: it compiled the program

    lib = libseccomp.loaded_path()
    if lib is None:
        return  # nothing to tell a later libseccomp from this one: no entry
    header = {"library": _library_identity(lib), "sha256": hashlib.sha256(compiled).hexdigest()}
    _put(entry, MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + compiled)


def _put(entry: Path, data: bytes) -> None:
    """Temp file + rename (no fsync: a torn entry reads as a miss)."""
    entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, entry)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _library_identity(path: str) -> dict[str, object]:
    """What changes when the library file is replaced: its path (the version is in the
    name libseccomp.so.2.5.4), inode, size and mtime. OSError if it is gone."""
    st = os.stat(path)
    return {"path": path, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_profile(path: Path) -> bytes:
    from builder.errors import UsageError

    try:
        return path.read_bytes()
    except OSError as err:
        raise UsageError(f"seccomp profile {path}: {err.strerror or err}") from None


def _compile(text: bytes, path: Path, caps: frozenset[str]) -> bytes:
    from builder.sandbox import seccomp  # libseccomp (ctypes) only on a miss

    return seccomp.compile_filter(seccomp.parse_text(text, path), caps)
