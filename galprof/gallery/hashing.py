"""The content hash of a media file: its identity in the store.

blake2b (128 bits) of the file's size and every one of its bytes. Results, privacy
decisions, marks and uploads are keyed by it, so it must cover the whole file: a
rewrite anywhere in it (a face pasted into the middle of a photo) is a new item.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO


def hash_bytes(data: bytes) -> str:
    h = hashlib.blake2b(str(len(data)).encode(), digest_size=16)
    h.update(data)
    return h.hexdigest()


def hash_stream(f: BinaryIO, size: int, chunk: int = 1 << 20) -> str:
    """hash_bytes of a file read from an open binary file (from its current position)."""
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    while block := f.read(chunk):
        h.update(block)
    return h.hexdigest()


def hash_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hash_stream(f, os.fstat(f.fileno()).st_size)
