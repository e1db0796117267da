"""tunnels/plain_text.py: no control or format character survives in a kept name."""

from __future__ import annotations

import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from tunnels.plain_text import REMOVED, plain


@given(st.text())
@example("lt on evil\u202eelpmaxe")  # RIGHT-TO-LEFT OVERRIDE
@example("laptop\nApproved by the operator")
@example("a\u2066b\u2069c\u200bd\x85e\u2028")  # isolate, zero-width space, NEL (C1), LS
def test_no_control_or_format_character_survives(text: str) -> None:
    assert not any(unicodedata.category(ch) in REMOVED for ch in plain(text))


@given(st.text(st.characters(exclude_categories=("Cc", "Cf", "Zl", "Zp", "Zs"))))
def test_printable_text_is_kept_as_it_is(text: str) -> None:
    assert plain(text) == text


def test_the_usual_suspects_are_removed() -> None:
    assert plain(" my\u202eLaptop\r\n ") == "myLaptop"
