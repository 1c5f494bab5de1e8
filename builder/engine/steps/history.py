"""History lines of the layer steps, as BuildKit's dockerfile2llb writes them.

`docker history` users and reproducibility checkers compare them verbatim, so the words
and their order are BuildKit's: flags that change the files (--chown, --chmod; never
--from or --link), the sources as expanded, heredoc sources as `<<NAME` after the others,
the destination as written, and ` # buildkit` on every step that made a layer operation.
"""

from __future__ import annotations

from builder.engine.steps.base import is_heredoc_marker
from builder.recipe import instructions as ins


def copy_history(resolved: ins.Copy | ins.Add) -> str:
    words = [resolved.keyword]
    if resolved.chown:
        words.append(f"--chown={resolved.chown}")
    if resolved.chmod:
        words.append(f"--chmod={resolved.chmod}")
    words += [s for s in resolved.sources if not is_heredoc_marker(s)]
    words += [f"<<{doc.name}" for doc in resolved.heredocs]
    return " ".join([*words, resolved.dest]) + " # buildkit"
