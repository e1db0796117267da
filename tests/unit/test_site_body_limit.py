"""The site's body limit (relay.protocol.site_max_body_bytes) always admits a replay's largest
edits: an operator who raises RELAY_INSPECT_BODY_BYTES must not find replays refused with 413
by the edge before the inspector's own check."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.protocol import SITE_MAX_BODY_BYTES, inspect_edits_max_bytes, site_max_body_bytes


@given(
    body=st.integers(min_value=0, max_value=64 * 1024 * 1024),
    head=st.integers(min_value=1, max_value=1024 * 1024),
)
def test_the_site_limit_admits_the_largest_replay_edits(body: int, head: int) -> None:
    limit = site_max_body_bytes(body, head)
    assert limit >= inspect_edits_max_bytes(body, head)
    assert limit >= SITE_MAX_BODY_BYTES


def test_at_the_defaults_the_site_limit_is_one_mib() -> None:
    from django.conf import settings

    assert (
        site_max_body_bytes(settings.RELAY_INSPECT_BODY_BYTES, settings.RELAY_MAX_HEADER_BYTES)
        == SITE_MAX_BODY_BYTES
    )
