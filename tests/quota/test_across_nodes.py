"""Requests per minute are counted per account across the nodes of a cluster (Redis): an
anonymous owner at its limit on alpha is refused on bravo once a batch has gone through
(RELAY_FLUSH_S), and another address is not."""

from __future__ import annotations

from harness.fake_client import FakeTunnelClient
from harness.quota_clock import fresh_minute
from harness.waiting import wait_until

LIMIT = 4
FLUSH_S = 5.0  # RELAY_FLUSH_S's default: one batch each way, with room
SOURCE, OTHER = "127.0.0.21", "127.0.0.22"  # two anonymous owners


def test_an_owner_at_its_limit_on_one_node_is_refused_on_the_other(node_factory) -> None:
    quota = {"RELAY_DEFAULT_PLAN_MAX_REQUESTS_PER_MINUTE": LIMIT}
    alpha, bravo = node_factory("alpha", **quota), node_factory("bravo", **quota)
    fresh_minute(need_s=3 * FLUSH_S)
    here = FakeTunnelClient(alpha, source=SOURCE)  # no pool socket: each visit is a quick 503
    there = FakeTunnelClient(bravo, source=SOURCE)
    other = FakeTunnelClient(bravo, source=OTHER)
    try:
        answers = [alpha.get("/", name=here.name) for _ in range(LIMIT + 1)]
        assert [a.status for a in answers[:LIMIT]] == [503] * LIMIT
        assert answers[LIMIT].status == 429
        refused = wait_until(
            lambda: (a := bravo.get("/", name=there.name)).status == 429 and a,
            3 * FLUSH_S,
            "bravo to refuse the account's other tunnel",
        )
        message = refused.body.decode()  # the page a browser sees
        assert f"used its {LIMIT} requests for this minute (plan default)" in message
        assert "UTC, in " in message
        assert 1 <= int(refused.header("retry-after") or "0") <= 60
        assert bravo.get("/", name=other.name).status == 503  # another address: its own count
    finally:
        for client in (here, there, other):
            client.close()
