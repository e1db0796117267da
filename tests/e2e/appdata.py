"""What the local app (tests/apps/local_app.py) answers, for comparing bodies."""

from __future__ import annotations

GREETING = b"hello from the local app\n"
CHUNKS = b"first chunk\nsecond chunk\nthird and last chunk\n"


def pattern(n: int) -> bytes:
    """The body of /bytes/N: byte i is i % 251."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]
