"""Tile geometry, the byte-bounded tile cache and the asynchronous tile loader (no Qt)."""
