"""lt says a size as the relay's pages do (client sizes.py, tunnels/sizes.py): one rule, so
the account's `limits:` line, the account page and the relay's 429 name a limit the same way, never
`976.562 KiB` or `16000000 of 1000000`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.pool.quota import _size as relay_size
from tunnels import sizes
from tunnelsite_client import sizes as client_sizes
from tunnelsite_client.registration import describe_limits


@given(st.integers(min_value=0, max_value=2**60))
def test_lt_and_the_relay_say_every_size_alike(count: int) -> None:
    assert client_sizes.binary(count) == sizes.binary(count) == relay_size(count)


def test_the_limits_line_names_sizes_in_at_most_three_figures_and_the_bandwidth() -> None:
    line = describe_limits(
        {"plan": "Free", "bytes_per_day": 3_000_000, "bytes_per_second": 1_000_000}
    )
    assert (
        line == "2.9 MiB a day (UTC), 977 KiB/s each way (plan Free, per account, all its tunnels)"
    )
    older_relay = describe_limits({"plan": "Free", "bytes_per_day": 1_000_000})
    assert older_relay == "977 KiB a day (UTC) (plan Free, per account, all its tunnels)"
