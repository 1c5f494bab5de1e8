"""`builder run`: a container from an image, in the same sandbox RUN steps use."""

from builder.runtime.container import RunOptions, run_image

__all__ = ["RunOptions", "run_image"]
