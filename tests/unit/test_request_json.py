"""tunnels/request_json.py: JSON a client sends is parsed or refused with BadJson, never
anything else (a RecursionError was a 500 with a traceback)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnels.request_json import BadJson, loads


@pytest.mark.parametrize("opener", ["[", '{"a":', '[{"a":'])
def test_deep_nesting_is_bad_json(opener: str) -> None:
    with pytest.raises(BadJson, match="nested too deeply"):
        loads(opener * 50_000, max_bytes=1_000_000)


def test_a_body_past_the_bound_is_refused_before_parsing() -> None:
    with pytest.raises(BadJson, match="11 bytes, past the 10"):
        loads(b'"abcdefghi"', max_bytes=10)


def test_a_number_past_pythons_digit_limit_is_bad_json() -> None:
    with pytest.raises(BadJson, match="number"):
        loads("9" * 5000, max_bytes=10_000)


def test_not_utf8_and_not_json_say_so() -> None:
    with pytest.raises(BadJson, match="UTF-8"):
        loads(b'"\xff"', max_bytes=100)
    with pytest.raises(BadJson, match="at character 1"):
        loads("{", max_bytes=100)


def test_the_hooks_own_refusal_passes_through() -> None:
    class Mine(ValueError):
        pass

    def refuse(pairs: list[tuple[str, object]]) -> object:
        raise Mine("duplicate")

    with pytest.raises(Mine):
        loads('{"a": 1}', max_bytes=100, object_pairs_hook=refuse)


@given(st.text(alphabet='[]{}":,0a ', max_size=3000))
def test_any_text_is_parsed_or_bad_json(text: str) -> None:
    try:
        assert loads(text, max_bytes=10_000) == json.loads(text)
    except BadJson:
        pass
