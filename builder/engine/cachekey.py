"""Cache keys: a chain of sha256 digests over each step's resolved inputs.

A key depends on the parent's key, the instruction as resolved (variables expanded) and the
content it reads (context files by digest). Never on mtimes or absolute paths, so a fresh
clone of the same sources on another machine computes the same keys.
"""

from __future__ import annotations

import hashlib
import json

KEY_VERSION = "builder-cache-v5"  # bump when a step's meaning changes (v2: ADD unpacks tars;
# v3: scratch has PATH and WorkingDir, proxy args left out of RUN's env, heredocs joined
# as BuildKit joins them; v4: COPY ownership and modes as BuildKit's file ops; v5: RUN's
# default network is a private one with outbound access, no longer loopback only)


def chain(parent: str, kind: str, payload: object) -> str:
    text = json.dumps([KEY_VERSION, parent, kind, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
