"""The bytes of big transfers: a 1 MiB block of `i % 251` repeated, so both ends can make
the same stream without storing it, and chunk edges never line up with the pattern."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator

BLOCK_BYTES = 1024 * 1024
BLOCK = (bytes(range(251)) * (BLOCK_BYTES // 251 + 1))[:BLOCK_BYTES]


def chunks(length: int) -> Iterator[bytes]:
    """`length` bytes of the pattern, in pieces of at most BLOCK_BYTES."""
    left = length
    while left > 0:
        piece = BLOCK if left >= BLOCK_BYTES else BLOCK[:left]
        left -= len(piece)
        yield piece


@functools.cache
def sha256_of(length: int) -> str:
    digest = hashlib.sha256()
    for piece in chunks(length):
        digest.update(piece)
    return digest.hexdigest()
