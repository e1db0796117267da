"""Text fit for a terminal: what lt prints of what it was given (the relay's answers, names,
URLs, messages) goes through `printable` first.

A relay (or a proxy, or anyone in the middle of plain http) chooses that text. Printed raw, an
ESC or an OSC sequence in it would colour, retitle or rewrite the user's terminal, a bidi
override (U+202E) show a line in another order than it reads, and a line break forge a line of
lt's own (`your url is: ...`). Kept: every character `str.isprintable` accepts (letters, marks,
symbols, punctuation, the space); dropped: the rest (control characters C0 and C1 with ESC,
CSI and NEL, format characters Cf with the bidi controls, line and paragraph separators).
"""

from __future__ import annotations

from .limits import RELAY_TEXT_SHOWN_CHARS


def printable(text: str, limit: int | None = RELAY_TEXT_SHOWN_CHARS) -> str:
    """`text` without what a terminal would act on rather than show, cut to `limit`
    characters (None: whole, for lt's own lines that carry relay text already cut)."""
    if text.isascii() and text.isprintable():  # nearly every line: no copy
        return text if limit is None else text[:limit]
    shown = "".join(ch for ch in text if ch.isprintable())
    return shown if limit is None else shown[:limit]
