"""A real Prometheus (Debian's) scrapes a running relay both ways: the bare domain with the
bearer token (its `authorization` config), and RELAY_METRICS_BIND's listener without one; its
HTTP API then shows the targets up and the relay's values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.processes import ProcessGroup
from harness.prometheus import TOKEN, Job, Prometheus, listener_port
from harness.relay import LocalApp, LtLauncher, Relay
from harness.waiting import wait_until

SCRAPES_S = 20  # a few scrapes at Prometheus' 1 s interval, with room for a loaded machine


def test_prometheus_scrapes_the_relay_both_ways_and_sees_its_traffic(
    relay_factory: Callable[..., Relay],
    local_app: LocalApp,
    lt_factory: LtLauncher,
    tmp_path: Path,
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN, RELAY_METRICS_BIND="127.0.0.1:0")
    port = listener_port(relay)
    lt = lt_factory(relay, local_app.port)
    for _ in range(4):
        assert relay.get("/hello", name=lt.name).status == 200
    group = ProcessGroup()
    try:
        prometheus = Prometheus(
            group,
            tmp_path,
            [Job("bare", relay.port, token=TOKEN), Job("listener", port)],
        )
        wait_until(
            lambda: prometheus.health() == {"bare": "up", "listener": "up"},
            SCRAPES_S,
            "both targets to be up",
        )
        tunnels = 'tunnelsite_tunnels{kind="http",plan="default"}'
        wait_until(
            lambda: prometheus.query(tunnels) == {"bare": 1.0, "listener": 1.0},
            SCRAPES_S,
            "Prometheus to hold the live tunnel from both jobs",
        )
        requests = prometheus.query('tunnelsite_requests_total{plan="default"}')
        assert requests == {"bare": 4.0, "listener": 4.0}, requests
        assert prometheus.query('tunnelsite_pool_sockets{plan="default"}') == {
            "bare": 10.0,
            "listener": 10.0,
        }
        # The process collectors are there too (the relay's own registry).
        memory = prometheus.query("process_resident_memory_bytes")
        assert set(memory) == {"bare", "listener"} and all(v > 0 for v in memory.values())
    finally:
        group.stop_all()


def test_prometheus_with_a_wrong_token_sees_the_target_down(
    relay_factory: Callable[..., Relay], tmp_path: Path
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    group = ProcessGroup()
    try:
        prometheus = Prometheus(group, tmp_path, [Job("wrong", relay.port, token="not-the-token")])
        wait_until(
            lambda: prometheus.health().get("wrong", "").startswith("down"),
            SCRAPES_S,
            "the target with a wrong token to be down",
        )
        assert "401" in prometheus.health()["wrong"]
    finally:
        group.stop_all()
