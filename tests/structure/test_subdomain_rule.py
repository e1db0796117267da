"""The client's subdomain rule is the relay's: `lt` refuses exactly the names the relay would.

The client checks a name before registering (a usage error instead of a 403 round trip) and
imports nothing from the server, so it keeps its own copy of the rule (tunnelsite_client/limits.py).
These tests pin that copy to relay.protocol's on arbitrary text and on the edges.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay.protocol import SUBDOMAIN_RULE as relay_rule
from relay.protocol import is_valid_subdomain as relay_accepts
from tunnelsite_client.limits import SUBDOMAIN_RULE as client_rule
from tunnelsite_client.registration import is_valid_subdomain as client_accepts

# Names built from the characters the rule is about, so most draws land near its edges
# (arbitrary text is nearly always refused by both, which proves little on its own).
NAME_CHARS = "abcxyz0189-AZ_.é"


@given(st.text())
def test_they_agree_on_arbitrary_text(name):
    assert client_accepts(name) == relay_accepts(name)


@given(st.text(alphabet=NAME_CHARS, max_size=70))
@example("abcd\n")  # `$` would match before a final newline: fullmatch does not
def test_they_agree_on_names_near_the_rule(name):
    assert client_accepts(name) == relay_accepts(name)


EDGES = {
    "abc": False,  # 3: too short
    "abcd": True,  # 4
    "a" * 63: True,  # the longest DNS label
    "a" * 64: False,  # a 64-character label resolves nowhere
    "a" * 65: False,
    "a" + "-" * 61 + "b": True,  # 63 with inner hyphens
    "a" + "-" * 62 + "b": False,  # 64 with inner hyphens
    "a" + "b" * 63 + "c": False,  # 65
    "abcd\n": False,  # a trailing newline, which `$` would have let through
    "my-app\n": False,
    "-abcde": False,
    "abcde-": False,
    "ab-cd": False,  # 5 with a hyphen: the hyphen form needs 6
    "abc-de": True,
    "Abcd": False,  # upper case: the CLI lowercases before checking
    "ABCD": False,
    "abcdé": False,  # unicode letters are not a-z
    "abcd١": False,  # Arabic-Indic digit: not 0-9
    "ａｂｃｄ": False,  # full-width letters
    "ab_cd": False,
    "ab.cd": False,
    "": False,
}


@pytest.mark.parametrize(("name", "valid"), EDGES.items(), ids=[repr(n)[:20] for n in EDGES])
def test_they_agree_on_the_edges(name, valid):
    assert client_accepts(name) == relay_accepts(name) == valid


def test_they_word_the_rule_alike():
    assert client_rule == relay_rule


def test_the_rule_in_words_says_what_the_pattern_does():
    """The numbers in the sentence are the pattern's edges: shortest, longest, shortest with
    a hyphen (a message that said 6-65 once, in lt, would fail here)."""
    shortest, longest, with_hyphen = (int(n) for n in re.findall(r"\d+", relay_rule))
    assert relay_accepts("a" * shortest) and not relay_accepts("a" * (shortest - 1))
    assert relay_accepts("a" * longest) and not relay_accepts("a" * (longest + 1))
    hyphenated = "a-" + "b" * (with_hyphen - 2)
    assert relay_accepts(hyphenated) and not relay_accepts(hyphenated[:-1])


def test_the_edges_cover_lengths_3_4_63_64_65():
    lengths = {len(name) for name in EDGES}
    assert {3, 4, 63, 64, 65} <= lengths
