"""A second process that turns plain small files into their tar entries, for the layer writer.

Why: a layer of 50,000 small files costs five syscalls a file (lstat, open, flistxattr,
read, close), and in one Python thread those alone took as long as the whole
`tar -c | zstd` pipe (the GIL serialises threads' syscall wrappers). So the writer walks
(its dirs' listings only: the walk leaves regular files unstatted) and hands runs of
entries to this helper, which lstats, opens, reads and builds them; while it does, the
writer makes the next runs itself with the same function (`make_all`), and puts all the
bytes in the stream in walk order. Only what cannot change the output is made so: a
regular file with one link, no xattrs, a name without the whiteout prefix, at most
MAX_FILE bytes, read to exactly its lstat size. For anything else (an error included)
the answer is "not mine" and the writer makes the entry as it does without a helper; so
the bytes, and every error message, are the same with the helper, without it, or when it
dies midway (the writer then goes on alone).

The protocol, over a Unix stream socket: a request is an 8-byte length, sent with the
batch's directory fds (SCM_RIGHTS), and a marshal'd list of entries
(fd index, name, path, mode, uid, gid, size, mtime, st_dev); a reply is two 8-byte lengths,
a marshal'd list of each entry's byte count (0: not mine), and the entries' bytes back to
back, as they are. marshal: C speed both ways, and only built-in values cross.
"""

from __future__ import annotations

import contextlib
import errno
import marshal
import os
import select
import socket
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from builder.layer.tarwrite import REGTYPE, header, padding

MAX_FILE = 64 << 10  # bigger files are read by the writer (their copy dominates)
MAX_MADE = 1 << 20  # bytes of one reply, about (a batch's memory is bounded)
_LEN = struct.Struct("<Q")
_REPLY = struct.Struct("<QQ")  # the lengths' marshal'd size, the entries' bytes
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
_HELLO = b"+"
MAX_FDS = 16  # directory fds one request may carry (SCM_RIGHTS allows 253)

Request = tuple[int, bytes, bytes, int, int, int, int, int, int]
Made = tuple[list[int], bytearray]  # each entry's length (0: not made) and their bytes


def plain_entry(dir_fd: int, req: Request, no_xattrs: set[int], out: bytearray) -> bool:
    """Append the entry of `req` to `out`, if it is a plain one (see the module's doc);
    False, with `out` unchanged, when it is not. `req` holds the file's lstat fields, or
    a mode of 0 (a file the walk did not lstat: then its mtime field is the clamp)."""
    _, name, path, mode, uid, gid, size, mtime, dev = req
    if not mode:
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except OSError:
            return False
        mode, size = st.st_mode, st.st_size
        if not stat.S_ISREG(mode) or st.st_nlink != 1 or size > MAX_FILE:
            return False
        uid, gid, dev = st.st_uid, st.st_gid, st.st_dev
        mtime = min(max(int(st.st_mtime), 0), mtime)
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        if dev not in no_xattrs:
            try:
                if os.listxattr(fd):
                    return False
            except OSError as err:  # layer/xattrs' reading of the same answers
                if err.errno == errno.ENOTSUP:
                    no_xattrs.add(dev)
                elif err.errno != errno.EPERM:
                    return False
        data = os.read(fd, size) if size else b""
    except OSError:
        return False
    finally:
        os.close(fd)
    if len(data) != size:
        return False  # shrank since its lstat: the writer's own read says so
    out += header(path, REGTYPE, mode, uid, gid, size, mtime)
    out += data
    out += padding(size)
    return True


def make_all(fds: list[int], requests: list[Request], no_xattrs: set[int]) -> Made:
    """The plain entries of a batch (an entry with fd index -1 is the writer's own), up to
    about MAX_MADE bytes (the writer makes the rest)."""
    out = bytearray()
    lengths: list[int] = []
    for req in requests:
        before = len(out)
        if req[0] >= 0 and before < MAX_MADE:
            plain_entry(fds[req[0]], req, no_xattrs, out)
        lengths.append(len(out) - before)
    return lengths, out


def _recv_exactly(
    sock: socket.socket, n: int, alive: Callable[[], bool] | None = None
) -> bytearray | None:
    """`n` bytes from `sock`, or None at its end (or, given `alive`, once that says the
    peer is gone: a copy of its end that another process holds keeps the EOF away)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if alive is not None:
            while not select.select([sock], [], [], 1.0)[0]:
                if not alive():
                    return None
        k = sock.recv_into(view[got:])
        if not k:
            return None
        got += k
    return buf


def serve(sock_fd: int) -> None:
    """The helper's loop: answer requests until the writer closes its end."""
    sock = socket.socket(fileno=sock_fd)
    # Room for a few replies: the helper goes on with the next batch while the writer,
    # busy with its own, has not read the last yet (the kernel caps it at wmem_max).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MAX_MADE)
    sock.sendall(_HELLO)
    no_xattrs: set[int] = set()
    while True:
        head, fds, _flags, _addr = socket.recv_fds(sock, _LEN.size, MAX_FDS)
        if not head:
            return
        if len(head) < _LEN.size:
            rest = _recv_exactly(sock, _LEN.size - len(head))
            if rest is None:
                return
            head += bytes(rest)
        payload = _recv_exactly(sock, _LEN.unpack(head)[0])
        if payload is None:
            return
        try:
            lengths, made = make_all(fds, marshal.loads(payload), no_xattrs)
        finally:
            for fd in fds:
                os.close(fd)
        counts = marshal.dumps(lengths)
        try:  # the entries' bytes as they are: no copy into one reply
            sock.sendall(_REPLY.pack(len(counts), len(made)) + counts)
            sock.sendall(made)
        except BrokenPipeError:
            return  # the writer is gone (it failed, or went on alone)


class EntryHelper:
    """The writer's end: the helper process and the requests it has not answered yet."""

    def __init__(self) -> None:
        import subprocess  # here: the helper itself does not need it

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        root = str(Path(__file__).resolve().parents[2])  # the dir holding `builder`
        code = (
            f"import sys; sys.path.insert(0, {root!r}); "
            f"from {__name__} import serve; serve({theirs.fileno()})"
        )
        try:
            # -I -S: no site packages, no environment: the helper imports only the stdlib
            # and tarwrite, and starts in about 20 ms.
            self._proc: subprocess.Popen[bytes] = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", code],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # a helper that fails is only not used
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # ^C is the writer's: the helper ends at its EOF
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._ready = False

    def ready(self) -> bool:
        """Whether the helper has started (its greeting arrived): until then the writer
        makes every entry itself rather than wait for the interpreter's start."""
        if not self._ready:
            with contextlib.suppress(BlockingIOError):
                self._ready = self._sock.recv(1, socket.MSG_DONTWAIT) == _HELLO
        return self._ready

    def submit(self, fds: list[int], entries: list[Request]) -> None:
        payload = marshal.dumps(entries)
        head = _LEN.pack(len(payload))
        if socket.send_fds(self._sock, [head], fds) != len(head):
            raise OSError(errno.EIO, "short send of a request head")
        self._sock.sendall(payload)

    def answered(self) -> bool:
        """Whether a reply has started to arrive (take() would not wait long)."""
        try:
            return bool(self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return False

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a reply to start arriving."""
        return bool(select.select([self._sock], [], [], timeout)[0])

    def _alive(self) -> bool:
        return self._proc.poll() is None

    def take(self) -> Made:
        """The answer to the oldest request; OSError if the helper is gone."""
        alive = self._alive
        head = _recv_exactly(self._sock, _REPLY.size, alive)
        if head is not None:
            counts_size, made_size = _REPLY.unpack(head)
            counts = _recv_exactly(self._sock, counts_size, alive)
            made = _recv_exactly(self._sock, made_size, alive)
            if counts is not None and made is not None:
                return marshal.loads(counts), made
        raise OSError(errno.EPIPE, "the entry helper ended")

    def close(self) -> None:
        import subprocess

        # The helper reads EOF (or gets EPIPE on its reply) and exits: shutdown, not only
        # close, since a process another thread forked meanwhile may hold a copy of the fd.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if not self._ready:
            self._proc.kill()  # still starting (a layer written before it was): no wait
        if self._proc.poll() is None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
