"""relay/edge/plain_http.py checks a request's headers as Daphne's `process` does."""

from __future__ import annotations

from daphne.utils import INVALID_HEADER_VALUE_BYTES
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.edge.plain_http import _INVALID_VALUE


@settings(max_examples=500)
@given(value=st.binary(max_size=20) | st.sampled_from([bytes([b]) for b in range(256)]))
def test_a_header_value_is_refused_exactly_when_daphne_refuses_it(value: bytes) -> None:
    assert bool(_INVALID_VALUE.search(value)) == bool(
        INVALID_HEADER_VALUE_BYTES.intersection(value)
    )
