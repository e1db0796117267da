"""relay/edge/trailers.py's check of a chunked body's trailer lines, sans-IO: the head's
rules (no CR, LF or NUL inside a line, no obs-fold, `name: value` with a token name)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.edge.trailers import trailer_problem

TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
names = st.binary(min_size=1, max_size=20).map(lambda b: bytes(TCHAR[c % len(TCHAR)] for c in b))
values = st.binary(max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
)


@given(name=names, value=values)
def test_a_field_line_with_a_token_name_is_taken(name: bytes, value: bytes) -> None:
    assert trailer_problem(name + b":" + value, complete=True) == ""
    assert trailer_problem(name + b":" + value, complete=False) == ""


@given(
    line=st.binary(max_size=40),
    bad=st.sampled_from([b"\r", b"\n", b"\0"]),
    at=st.integers(0, 40),
    complete=st.booleans(),
)
def test_cr_lf_or_nul_anywhere_is_refused_complete_or_not(
    line: bytes, bad: bytes, at: int, complete: bool
) -> None:
    at = min(at, len(line))
    assert "CR, LF or NUL" in trailer_problem(line[:at] + bad + line[at:], complete)


@given(name=names, value=values, lead=st.sampled_from([b" ", b"\t"]))
def test_a_folded_line_is_refused(name: bytes, value: bytes, lead: bytes) -> None:
    assert "obs-fold" in trailer_problem(lead + name + b":" + value, complete=True)


@given(value=values)
def test_a_complete_line_needs_a_token_name_before_a_colon(value: bytes) -> None:
    plain = value.replace(b":", b"")
    assert trailer_problem(plain, complete=False) == "" or plain[:1] in (b" ", b"\t")
    if plain[:1] not in (b" ", b"\t"):
        assert "not a header field" in trailer_problem(plain, complete=True)
        assert "not a header field" in trailer_problem(b"X(T):" + value, complete=True)
        assert "not a header field" in trailer_problem(b":" + value, complete=True)
