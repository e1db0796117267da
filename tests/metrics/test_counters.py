"""/metrics on a real relay with real traffic: both clients, an app's own errors, the relay's
own 502 and 503 by cause, refused registrations, a WebSocket, a TCP tunnel. Each test reads
the exposition before and after (the relay's counters only grow), checks what moved, and
runs promtool over what it read."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.fake_client import FakeTunnelClient
from harness.our_client import OurLtLauncher
from harness.processes import ProcessGroup
from harness.prometheus import TOKEN, promtool_check, scrape, series, value
from harness.relay import LocalApp, LtLauncher, Relay, free_port
from harness.tcp_tunnels import LtTcpLauncher, free_port_range, make_users, start_tcp_app
from harness.waiting import IO_TIMEOUT_S, wait_until
from harness.websocket import run_websocket

from bench.tcp_transfer import echo

PLAN = {"plan": "default", "node": ""}  # the default plan's tunnels, on a relay with no name


def delta(before: str, after: str, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_both_clients_traffic_moves_the_counters(
    relay_factory: Callable[..., Relay],
    local_app: LocalApp,
    lt_factory: LtLauncher,
    our_launcher: OurLtLauncher,
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    before = scrape(relay)
    npm = lt_factory(relay, local_app.port)
    ours = our_launcher(relay, local_app.port)
    for name in (npm.name, ours.name):
        for _ in range(3):
            answer = relay.get("/bytes/1000", name=name)
            assert answer.status == 200 and len(answer.body) == 1000, answer
        assert relay.get("/status/404", name=name).status == 404  # the app's own 404
    after = scrape(relay)
    promtool_check(after)
    assert value(after, "tunnelsite_tunnels", kind="http", **PLAN) == 2
    assert value(after, "tunnelsite_pool_sockets", **PLAN) == 20  # 10 each
    assert delta(before, after, "tunnelsite_requests_total", **PLAN) == 8
    assert delta(before, after, "tunnelsite_responses_total", **{"class": "2xx"}) == 6
    assert delta(before, after, "tunnelsite_responses_total", **{"class": "4xx"}) == 2
    assert delta(before, after, "tunnelsite_bytes_out_total", **PLAN) >= 6000
    assert delta(before, after, "tunnelsite_registrations_total", outcome="ok") == 2
    assert value(after, "tunnelsite_requests_in_flight") == 0
    assert value(after, "tunnelsite_accepting") == 1
    # What a tunnel carried stays counted after it closes (the registry forgets it).
    npm.stop()
    ours.process.stop()
    wait_until(
        lambda: value(scrape(relay), "tunnelsite_tunnels_closed_total", **PLAN) == 2,
        IO_TIMEOUT_S + 20,  # the reconnect grace period (RELAY_GRACE_S, 15 s) runs out first
        "both tunnels to close",
    )
    final = scrape(relay)
    assert value(final, "tunnelsite_tunnels", **PLAN) == 0
    assert value(final, "tunnelsite_requests_total", **PLAN) == value(
        after, "tunnelsite_requests_total", **PLAN
    )
    assert value(final, "tunnelsite_bytes_out_total", **PLAN) == value(
        after, "tunnelsite_bytes_out_total", **PLAN
    )


def test_the_relays_own_502_and_503_are_counted_by_cause(
    relay_factory: Callable[..., Relay],
    fake_client_factory: Callable[..., FakeTunnelClient],
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    before = scrape(relay)
    offline = fake_client_factory(relay)  # registered, and never a pool socket
    assert relay.get("/", name=offline.name).status == 503
    # A client that closes the pool socket without an answer (its app is down): 502. A POST
    # is never tried on a second socket, so one socket is enough.
    dead = fake_client_factory(relay)
    dead.connect(1)
    with ThreadPoolExecutor(1) as pool:
        visit = pool.submit(relay.request, "POST", "/", name=dead.name, body=b"payload")
        sock, request = dead.next_request()
        assert request.body == b"payload"
        sock.close()
        answer = visit.result(IO_TIMEOUT_S)
    assert answer.status == 502, answer
    after = scrape(relay)
    promtool_check(after)
    assert delta(before, after, "tunnelsite_relay_errors_total", cause="offline") == 1
    assert delta(before, after, "tunnelsite_relay_errors_total", cause="app_unreachable") == 1
    assert value(after, "tunnelsite_relay_errors_total", status="503", cause="offline") >= 1
    assert delta(before, after, "tunnelsite_relay_errors_total") == 2  # no other cause moved
    assert delta(before, after, "tunnelsite_responses_total", **{"class": "5xx"}) == 2


def test_refused_registrations_are_counted_by_status(relay_factory: Callable[..., Relay]) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    before = scrape(relay)
    assert relay.register("ab").status == 403  # too short to be a name
    # The default plan's 5 live tunnels per anonymous address: the sixth is refused.
    source = "127.0.0.77"
    answers = [relay.register(f"metrics-cap-{i}", source=source).status for i in range(6)]
    assert answers == [200] * 5 + [429], answers
    after = scrape(relay)
    assert delta(before, after, "tunnelsite_registrations_total", outcome="403") == 1
    assert delta(before, after, "tunnelsite_registrations_total", outcome="429") == 1
    assert delta(before, after, "tunnelsite_registrations_total", outcome="ok") == 5
    outcomes = {labels["outcome"] for labels in series(after, "tunnelsite_registrations_total")}
    assert outcomes == {"ok", "400", "401", "403", "404", "409", "426", "429", "503", "other"}


def test_a_websocket_is_counted_while_open_and_after(
    relay_factory: Callable[..., Relay], local_app: LocalApp, lt_factory: LtLauncher
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    lt = lt_factory(relay, local_app.port)
    before = scrape(relay)

    async def session(ws: object) -> str:
        await ws.send("hello")  # type: ignore[attr-defined]
        echoed = await ws.recv()  # type: ignore[attr-defined]
        # read while the WebSocket is open (blocking this loop for one scrape is fine)
        during = await asyncio.to_thread(scrape, relay)
        assert value(during, "tunnelsite_websockets_open") == 1
        return str(echoed)

    assert "hello" in run_websocket(relay, lt.name, session)
    wait_until(
        lambda: value(scrape(relay), "tunnelsite_websockets_open") == 0,
        IO_TIMEOUT_S,
        "the WebSocket to be counted closed",
    )
    after = scrape(relay)
    assert delta(before, after, "tunnelsite_websockets_opened_total") == 1
    assert delta(before, after, "tunnelsite_bytes_in_total", **PLAN) >= len("hello")
    promtool_check(after)


def test_a_tcp_tunnels_connections_are_counted(
    relay_factory: Callable[..., Relay], tmp_path: Path
) -> None:
    # RELAY_TCP_PORTS: TCP tunnels are off without it; the rest are the defaults.
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN, RELAY_TCP_PORTS=free_port_range(4))
    token = make_users(relay.env, {"metrics-tcp": []})["metrics-tcp"]
    group = ProcessGroup()
    try:
        app = start_tcp_app(group)
        lt = LtTcpLauncher(group, tmp_path)(f"http://localhost:{relay.port}", app, "--token", token)
        before = scrape(relay)
        assert value(before, "tunnelsite_tunnels", kind="tcp", **PLAN) == 1
        result = echo(lt.port, 100_000)
        assert result.sha256_ok
        wait_until(
            lambda: value(scrape(relay), "tunnelsite_tcp_connections_open") == 0,
            IO_TIMEOUT_S,
            "the TCP connection to be counted closed",
        )
        after = scrape(relay)
        assert delta(before, after, "tunnelsite_tcp_connections_opened_total") == 1
        assert delta(before, after, "tunnelsite_bytes_in_total", **PLAN) >= 100_000
        assert delta(before, after, "tunnelsite_bytes_out_total", **PLAN) >= 100_000
        promtool_check(after)
    finally:
        group.stop_all()


def test_our_lt_answering_for_a_dead_app_is_the_apps_5xx_not_a_relay_error(
    relay_factory: Callable[..., Relay], our_launcher: OurLtLauncher
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    dead_port = free_port()  # nothing listens there
    ours = our_launcher(relay, dead_port)
    before = scrape(relay)
    answer = relay.get("/", name=ours.name)
    assert answer.status == 502, answer  # our lt's own page: the app did not answer
    after = scrape(relay)
    assert delta(before, after, "tunnelsite_responses_total", **{"class": "5xx"}) == 1
    assert delta(before, after, "tunnelsite_relay_errors_total") == 0
    assert delta(before, after, "tunnelsite_requests_total", **PLAN) == 1
    ours.process.stop()
