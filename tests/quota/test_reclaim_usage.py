"""An anonymous tunnel that its client takes to a new address (our lt on another network,
registering again with its pool secret) is that address's from then on: its live-tunnel count
and, here, its requests per minute. The old address's use stays the old address's."""

from __future__ import annotations

from harness.fake_client import FakeTunnelClient, UpgradingTunnelClient
from harness.quota_clock import fresh_minute

LIMIT = 3
OLD, NEW = "127.0.0.31", "127.0.0.32"


def test_a_tunnel_reclaimed_from_a_new_address_counts_for_that_address(relay_factory) -> None:
    relay = relay_factory(RELAY_DEFAULT_PLAN_MAX_REQUESTS_PER_MINUTE=LIMIT)
    fresh_minute(need_s=8)
    moving = UpgradingTunnelClient(relay, source=OLD)  # no pool socket: visits get a quick 503
    staying = FakeTunnelClient(relay, source=OLD)  # the old address's other tunnel
    try:
        statuses = [relay.get("/", name=moving.name).status for _ in range(LIMIT + 1)]
        assert statuses[-1] == 429 and 429 not in statuses[:-1], statuses
        # The client moves: it registers its name again from NEW with its pool secret.
        info = moving.register(moving.name, source=NEW, secret=moving.secret)
        assert info["id"] == moving.name
        after = relay.get("/", name=moving.name)
        assert after.status != 429, after  # NEW's own count, not OLD's spent one
        assert relay.get("/", name=staying.name).status == 429  # OLD is still at its limit
    finally:
        moving.close()
        staying.close()
