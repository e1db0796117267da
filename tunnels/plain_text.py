"""Names people give things (a token's name, lt's device name and version), made plain
before they are kept: no control characters (C0, C1: a newline makes one name read as two
lines) and no format characters (Unicode category Cf: U+202E RIGHT-TO-LEFT OVERRIDE and the
other bidi overrides and isolates make "lt on evil‮elpmaxe" read backwards, and zero-width
ones hide text). Line and paragraph separators (U+2028, U+2029) go too. Templates still wrap
these names in <bdi>, so a right-to-left name cannot reorder the text around it.
"""

from __future__ import annotations

import unicodedata

# Categories removed: Cc (C0 and C1 controls), Cf (format: bidi, zero-width), Zl and Zp.
REMOVED = frozenset({"Cc", "Cf", "Zl", "Zp"})


def plain(text: str) -> str:
    """`text` without the characters above, and without spaces around it."""
    return "".join(ch for ch in text if unicodedata.category(ch) not in REMOVED).strip()
