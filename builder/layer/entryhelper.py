"""A second process that turns plain small files into their tar entries, for the layer writer.

Why: a layer of 50,000 small files costs five syscalls a file (lstat, open, flistxattr,
read, close), and in one Python thread those alone took as long as the whole
`tar -c | zstd` pipe (the GIL serialises threads' syscall wrappers). So the writer walks
(its dirs' listings only: the regular files a dir lists come as runs of names, not
lstat'ed) and hands a batch's runs to this helper, which lstats, opens, reads and builds
their entries; while it does, the writer makes the next batches itself with the same
function (`make_all`), and puts all the bytes in the stream in walk order. Only what
cannot change the output is made so: a regular file with no xattrs, a name without the
whiteout prefix, at most MAX_FILE bytes, read to exactly its lstat size. A file with more
than one link is made as a link's first name would be, and named in `linked` with its
inode: the writer, which knows the names taken in walk order, keeps the entry or makes it
again as a link to the earlier name (the tar's hardlink rule). For
anything else (an error included) the answer is "not mine" and the writer makes the entry
as it does without a helper; so the bytes, and every error message, are the same with the
helper, without it, or when it dies midway (the writer then goes on alone). The helper
also names the entries a frame may end after (their first block's crc32, frames.Cutter's
rule), so that the writer finds the cuts by bisection, without a Python step per entry.

The protocol, over a Unix stream socket: a request is an 8-byte length, sent with the
batch's directory fds (SCM_RIGHTS), and a marshal'd Request (the clamp, the cutter's
average, whether inodes are wanted, the runs); a reply is two 8-byte lengths, the
marshal'd lists of a Made, and the entries' bytes back to back, as they are. marshal: C
speed both ways, and only built-in values cross.
"""

from __future__ import annotations

import _socket
import array
import errno
import marshal
import os
import struct
import sys
from zlib import crc32

from builder.layer.tarwrite import PADDING, file_header

# The helper imports only what it runs (no socket, typing, pathlib, contextlib: 45 ms of
# its start, of 75); the writer's end imports the rest where it uses it (they are loaded
# in the writer's process already). typing's TYPE_CHECKING would import typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable

MAX_FILE = 64 << 10  # bigger files are read by the writer (their copy dominates)
MAX_MADE = 1 << 20  # bytes of one reply, about (a batch's memory is bounded)
_LEN = struct.Struct("<Q")
_REPLY = struct.Struct("<QQ")  # the lengths' marshal'd size, the entries' bytes
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
_HELLO = b"+"
_INT = array.array("i")
_WH = b".wh."  # layer/whiteout's prefix (not imported: the helper starts on the stdlib)
MAX_FDS = 16  # directory fds one request may carry (SCM_RIGHTS allows 253)

# A run: the dir's fd index in the request, the path prefix of its entries ('/'-ended, or
# b"" at the top), and the names (siblings the dir lists as regular files, in walk order).
Run = tuple[int, bytes, list[bytes]]
# A request: the mtime clamp, the frame cutter's average (frames.AVG_FRAME), whether to
# report the made files' inodes, and the runs.
Request = tuple[int, int, bool, list[Run]]


class Made:
    """A request's answer. Entries are numbered through its runs, in order."""

    __slots__ = ("candidates", "data", "declined", "inodes", "lengths", "linked")

    def __init__(
        self,
        lengths: list[int],
        declined: list[int],
        candidates: list[int],
        inodes: list[tuple[int, int, int, int]],
        linked: list[tuple[int, int, int]],
        data: bytearray,
    ) -> None:
        self.lengths = lengths  # each entry's bytes in `data` (0: not made, the writer's)
        self.declined = declined  # the entries of length 0, in order
        # The entries whose first block's crc32 modulo the average is below their length:
        # those the frame cutter (frames.Cutter.after_entry) may end a frame after.
        self.candidates = candidates
        self.inodes = inodes  # (st_dev, st_ino, st_size, st_nlink) of each entry, if asked
        # (entry, st_dev, st_ino) of each made entry whose file has more than one link.
        self.linked = linked
        self.data = data  # the made entries, back to back

    def counts(
        self,
    ) -> tuple[
        list[int], list[int], list[int], list[tuple[int, int, int, int]], list[tuple[int, int, int]]
    ]:
        return self.lengths, self.declined, self.candidates, self.inodes, self.linked


_NO_INODE = (0, 0, 0, 0)


def make_all(fds: list[int], request: Request, no_xattrs: set[int]) -> Made:
    """The plain entries of a request's runs, up to about MAX_MADE bytes (the writer makes
    the rest): each file lstat'ed, opened, asked for xattrs (unless its file system has
    none: `no_xattrs`, st_dev's that said ENOTSUP, grows here), read and closed."""
    clamp, average, want_inodes, runs = request
    out = bytearray()
    lengths: list[int] = []
    declined: list[int] = []
    candidates: list[int] = []
    inodes: list[tuple[int, int, int, int]] = []
    linked: list[tuple[int, int, int]] = []
    lstat, open_, close, read, listxattr = os.lstat, os.open, os.close, os.read, os.listxattr
    pads = PADDING
    i = -1  # the entry's number
    for index, prefix, names in runs:
        dir_fd = fds[index]
        for name in names:
            i += 1
            if len(out) >= MAX_MADE or name.startswith(_WH):
                lengths.append(0)
                declined.append(i)
                if want_inodes:
                    inodes.append(_NO_INODE)
                continue
            # Every failure here is "not mine": the writer makes the entry again, and
            # says what is wrong (or skips a file removed meanwhile) as it does alone.
            try:
                st = lstat(name, dir_fd=dir_fd)
                size = st.st_size
                if st.st_mode & _S_IFMT != _S_IFREG or size > MAX_FILE:
                    raise _Declined
                fd = open_(name, _FILE_FLAGS, dir_fd=dir_fd)
                try:
                    dev = st.st_dev
                    if dev not in no_xattrs:
                        try:
                            if listxattr(fd):
                                raise _Declined
                        except OSError as err:  # layer/xattrs' reading of the same answers
                            if err.errno == errno.ENOTSUP:
                                no_xattrs.add(dev)
                            elif err.errno != errno.EPERM:
                                raise
                    data = read(fd, size) if size else b""
                finally:
                    close(fd)
                if len(data) != size:
                    raise _Declined  # shrank since its lstat: the writer's own read says so
            except (OSError, _Declined):
                lengths.append(0)
                declined.append(i)
                if want_inodes:
                    inodes.append(_NO_INODE)
                continue
            mtime = int(st.st_mtime)  # (min and max: two calls more per file)
            if mtime > clamp:
                mtime = clamp
            elif mtime < 0:
                mtime = 0
            head = file_header(prefix + name, st.st_mode, st.st_uid, st.st_gid, size, mtime)
            pad = pads[size & 511]
            n = len(head) + size + len(pad)
            if crc32(head[:512]) % average < n:
                candidates.append(i)
            out += head
            out += data
            out += pad
            lengths.append(n)
            nlink = st.st_nlink
            if nlink != 1:
                linked.append((i, dev, st.st_ino))
            if want_inodes:
                inodes.append((dev, st.st_ino, size, nlink))
    return Made(lengths, declined, candidates, inodes, linked, out)


class _Declined(Exception):
    """An entry the helper leaves to the writer."""


_S_IFMT = 0o170000
_S_IFREG = 0o100000


def _recv_exactly(
    sock: _socket.socket, n: int, alive: Callable[[], bool] | None = None
) -> bytearray | None:
    """`n` bytes from `sock`, or None at its end (or, given `alive`, once that says the
    peer is gone: a copy of its end that another process holds keeps the EOF away)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if alive is not None:
            import select  # (the writer's end only)

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
    sock = _socket.socket(fileno=sock_fd)
    # Room for a few replies: the helper goes on with the next batch while the writer,
    # busy with its own, has not read the last yet (the kernel caps it at wmem_max).
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, 4 * MAX_MADE)
    sock.sendall(_HELLO)
    no_xattrs: set[int] = set()
    room = _socket.CMSG_LEN(MAX_FDS * _INT.itemsize)
    while True:
        # socket.recv_fds, without the socket module.
        head, ancillary, _flags, _addr = sock.recvmsg(_LEN.size, room)
        passed = array.array("i")
        for level, kind, data in ancillary:
            if (level, kind) == (_socket.SOL_SOCKET, _socket.SCM_RIGHTS):
                passed.frombytes(data[: len(data) - len(data) % passed.itemsize])
        fds = list(passed)
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
            made = make_all(fds, marshal.loads(payload), no_xattrs)
        finally:
            for fd in fds:
                os.close(fd)
        counts = marshal.dumps(made.counts())
        try:  # the entries' bytes as they are: no copy into one reply
            sock.sendall(_REPLY.pack(len(counts), len(made.data)) + counts)
            sock.sendall(made.data)
        except BrokenPipeError:
            return  # the writer is gone (it failed, or went on alone)


def _exits(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the child exits within `timeout` seconds. A pidfd says so the moment it
    does; Popen.wait(timeout) polls with sleeps that add up to 15 ms to a layer's end."""
    import select
    import subprocess

    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # (Linux < 5.3): Popen's polling
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


class EntryHelper:
    """The writer's end: the helper process and the requests it has not answered yet."""

    def __init__(self) -> None:
        import socket
        import subprocess

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The dir holding `builder`.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
        code = (
            f"import sys; sys.path.insert(0, {root!r}); "
            f"from {__name__} import serve; serve({theirs.fileno()})"
        )
        try:
            # -I -S: no site packages, no environment: the helper imports only a few
            # built-in modules and tarwrite, and starts in about 30 ms of CPU.
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
            import contextlib

            with contextlib.suppress(BlockingIOError):
                self._ready = self._sock.recv(1, _socket.MSG_DONTWAIT) == _HELLO
        return self._ready

    def submit(self, fds: list[int], request: Request) -> None:
        import socket

        payload = marshal.dumps(request)
        head = _LEN.pack(len(payload))
        if socket.send_fds(self._sock, [head], fds) != len(head):
            raise OSError(errno.EIO, "short send of a request head")
        self._sock.sendall(payload)

    def answered(self) -> bool:
        """Whether a reply has started to arrive (take() would not wait long)."""
        try:
            return bool(self._sock.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT))
        except BlockingIOError:
            return False

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a reply to start arriving."""
        import select

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
                lengths, declined, candidates, inodes, linked = marshal.loads(counts)
                return Made(lengths, declined, candidates, inodes, linked, made)
        raise OSError(errno.EPIPE, "the entry helper ended")

    def close(self) -> None:
        import contextlib

        # The helper reads EOF (or gets EPIPE on its reply) and exits: shutdown, not only
        # close, since a process another thread forked meanwhile may hold a copy of the fd.
        with contextlib.suppress(OSError):
            self._sock.shutdown(_socket.SHUT_RDWR)
        self._sock.close()
        if not self._ready:
            self._proc.kill()  # still starting (a layer written before it was): no wait
        if self._proc.poll() is None and not _exits(self._proc, 10):
            self._proc.kill()
        self._proc.wait()
