"""The engine: runs a build plan step by step (cache keys, context hashing, one handler per
instruction)."""
