"""Byte counts for people, in binary units (B, KiB, MiB, GiB, TiB), one way everywhere: the
account page, the admin and the chart say it as the inspector does (its JavaScript twin is
`size` in tunnels/static/tunnels/inspector.js, the same rule). Django's filesizeformat
divides by 1024 but says "KB", which read as 1000 beside the inspector's "64 KiB".
"""

from __future__ import annotations

UNITS = ("KiB", "MiB", "GiB", "TiB")


def binary(count: int | float | None) -> str:
    """`1536` -> `1.5 KiB`, `20480` -> `20 KiB`, `512` -> `512 B`: one decimal under 10."""
    if count is None:
        return "–"
    count = max(0, int(count))
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    unit = 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    shown = f"{int(value + 0.5)}" if value >= 10 else f"{value:.1f}"  # JS Math.round
    return f"{shown} {UNITS[unit]}"
