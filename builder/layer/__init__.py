"""Layers: deterministic tar writing from a dir, safe unpacking, whiteouts, compression."""
