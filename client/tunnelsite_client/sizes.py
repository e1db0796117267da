"""Byte counts as lt shows them (the account's limits, the traffic counters), by the relay's
rule (tunnels/sizes.py `binary`; tests/structure pins the two): `512 B`, `1.5 KiB`, `977 KiB`,
`2.9 MiB`."""

from __future__ import annotations

from .limits import KIB, SIZE_ONE_DECIMAL_BELOW, SIZE_UNITS


def binary(count: int | float) -> str:
    """`1536` -> `1.5 KiB`, `20480` -> `20 KiB`, `512` -> `512 B`: one decimal under 10."""
    count = max(0, int(count))
    if count < KIB:
        return f"{count} B"
    value = count / KIB
    unit = 0
    while value >= KIB and unit < len(SIZE_UNITS) - 1:
        value /= KIB
        unit += 1
    shown = (
        f"{int(value + 1 / 2)}" if value >= SIZE_ONE_DECIMAL_BELOW else f"{value:.1f}"
    )  # JS Math.round
    return f"{shown} {SIZE_UNITS[unit]}"
