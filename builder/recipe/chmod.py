"""COPY/ADD --chmod: octal bits or chmod(1)'s symbolic clauses, as BuildKit takes them.

BuildKit (dchapes/mode, BSD setmode with a zero umask) takes `755`/`0640` as the mode of
every copied file and directory, and of the parent directories the COPY creates. A
symbolic mode (`go-w`, `u=rwx,g=rx`, `+x`, `a+X`) is applied to each copied entry's own
mode, directories too; parent directories it creates stay 0755.
"""

from __future__ import annotations

import re

from builder.record import dataclass

_OCTAL = re.compile(r"[0-7]{1,5}")
_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)")
_OP = re.compile(r"([-+=])([ugo]|[rwxXst]*)")
# The bits each "who" may touch, its special bit included (setuid, setgid, sticky).
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_PERM = {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}
_SHIFT = {"u": 6, "g": 3, "o": 0}


class ChmodError(ValueError):
    """Not a mode BuildKit accepts; the message is BuildKit's."""


@dataclass(frozen=True)
class Chmod:
    octal: int | None  # the mode itself
    clauses: tuple[tuple[int, tuple[tuple[str, str], ...]], ...] = ()  # (who mask, ops)

    @property
    def created_dir_mode(self) -> int:
        """The mode of a parent directory the COPY creates."""
        return self.octal if self.octal is not None else 0o755

    def apply(self, mode: int, is_dir: bool) -> int:
        """The mode a copied entry gets, given its own (permission bits only)."""
        if self.octal is not None:
            return self.octal
        original = mode
        for who, ops in self.clauses:
            for op, perms in ops:
                if perms in _SHIFT:  # copy another class's bits: g=u
                    bits = (mode >> _SHIFT[perms]) & 0o7
                    value = (bits << 6 | bits << 3 | bits) & who & 0o777
                else:
                    value = 0
                    for p in perms:
                        if p == "X":
                            if is_dir or original & 0o111:
                                value |= 0o111
                        else:
                            value |= _PERM[p]
                    value &= who
                if op == "+":
                    mode |= value
                elif op == "-":
                    mode &= ~value
                else:
                    mode = (mode & ~(who & 0o7777)) | value
        return mode & 0o7777


def parse(text: str) -> Chmod:
    """--chmod's value; ChmodError in BuildKit's words when it is no mode."""
    if _OCTAL.fullmatch(text):
        value = int(text, 8)
        if value <= 0o7777:
            return Chmod(value)
    if text[:1].isdigit():  # looks numeric: BuildKit's compatible message
        raise ChmodError(
            f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777"
        )
    clauses = []
    for clause in text.split(","):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise ChmodError(f"invalid chmod parameter: '{text}': not a symbolic mode")
        who_text, ops_text = match.groups()
        who = 0
        for w in who_text.replace("a", "ugo") or "ugo":
            who |= _WHO[w]
        ops = tuple((m.group(1), m.group(2)) for m in _OP.finditer(ops_text))
        clauses.append((who, ops))
    return Chmod(None, tuple(clauses))
