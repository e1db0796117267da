"""What visitors and clients see when something is wrong, and the status API."""

from __future__ import annotations

import time
import uuid

import pytest

from .appdata import pattern

JSON = [("Accept", "application/json")]


def assert_html_error(answer, status: int) -> None:
    assert answer.status == status
    assert answer.header("content-type") == "text/html; charset=utf-8"
    assert f"<title>{status} " in answer.text


def assert_json_error(answer, status: int) -> str:
    assert answer.status == status
    assert answer.header("content-type") == "application/json"
    message = answer.json()["message"]
    assert isinstance(message, str) and message
    return message


# --- statuses from the shared relay -----------------------------------------------------------
def test_it_returns_400_when_the_host_header_is_missing(relay, send_raw):
    answer = send_raw(relay.port, b"GET /hello HTTP/1.1\r\n\r\n")

    assert_html_error(answer, 400)
    assert "Host" in answer.text


def test_it_returns_400_as_json_when_the_host_header_is_missing(relay, send_raw):
    answer = send_raw(relay.port, b"GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n")

    assert "Host" in assert_json_error(answer, 400)


def test_it_returns_404_as_html_for_an_unknown_tunnel(relay):
    answer = relay.get("/hello", name="nobody-here")

    assert_html_error(answer, 404)
    assert "nobody-here" in answer.text


def test_it_returns_404_as_json_for_an_unknown_tunnel_when_asked(relay):
    answer = relay.get("/hello", name="nobody-here", headers=JSON)

    assert "nobody-here" in assert_json_error(answer, 404)


def test_it_returns_503_with_retry_after_when_the_client_is_offline(relay):
    name = f"off-{uuid.uuid4().hex[:8]}"
    assert relay.register(name).status == 200  # registered, but no pool socket ever opens

    html = relay.get("/hello", name=name)
    json_answer = relay.get("/hello", name=name, headers=JSON)

    assert_html_error(html, 503)
    assert int(html.header("retry-after")) > 0
    assert_json_error(json_answer, 503)
    assert int(json_answer.header("retry-after")) > 0


def test_it_answers_403_json_for_an_invalid_subdomain(relay):
    for bad in ("A_B_C_D", "abc", "-leading", "trailing-"):
        answer = relay.register(bad)
        assert "subdomain" in assert_json_error(answer, 403).lower(), bad
        assert relay.sockets(bad) is None


def test_the_npm_client_exits_with_the_reason_for_an_invalid_subdomain(
    relay, local_app, lt_factory
):
    process = lt_factory.start(relay, local_app.port, subdomain="no_underscores")

    assert process.wait(timeout=15) != 0
    assert "Invalid subdomain" in process.output()


def test_the_status_api_counts_tunnels_and_sockets(relay, fake_client_factory):
    client = fake_client_factory(relay)
    client.connect(2)

    status = relay.status()

    assert set(status) >= {"tunnels", "sockets", "in_flight", "uptime_s", "mem"}
    assert status["tunnels"] >= 1 and status["sockets"] >= 2
    assert isinstance(status["mem"], dict)
    assert relay.get(f"/api/tunnels/{client.name}/status").json() == {"connected_sockets": 2}


def test_the_tunnel_status_api_answers_404_for_an_unknown_tunnel(relay):
    answer = relay.get("/api/tunnels/never-registered/status")

    assert "never-registered" in assert_json_error(answer, 404)


# --- statuses that need tight settings ---------------------------------------------------------
@pytest.fixture(scope="module")
def tight_relay(module_relay_factory):
    """Two pool sockets, a 1.5 s wait for one, room for one waiting visitor, 1 s grace."""
    return module_relay_factory(
        RELAY_MAX_SOCKETS=2,
        RELAY_SOCKET_WAIT_S=1.5,
        RELAY_MAX_WAITERS=1,
        RELAY_GRACE_S=1,
    )


@pytest.fixture
def held_tunnel(tight_relay, local_app, lt_factory):
    """An npm-client tunnel whose two sockets are both busy with /slow; yields its name."""
    client = lt_factory(tight_relay, local_app.port)
    key = uuid.uuid4().hex
    # From two addresses: one address may hold only all but RELAY_SPARE_SOCKETS (here one).
    visitors = [tight_relay.visitor(client.name, f"127.0.4.{i + 1}") for i in range(2)]
    try:
        for visitor in visitors:
            visitor.send(f"GET /slow?key={key} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        local_app.wait_for_waiting(key, 2)
        yield client.name
        local_app.release(key)
        for visitor in visitors:
            assert visitor.response().body == b"released\n"
    finally:
        local_app.release(key)
        for visitor in visitors:
            visitor.close()


def test_it_returns_504_when_no_socket_frees_up(tight_relay, held_tunnel):
    started = time.monotonic()
    answer = tight_relay.get("/hello", name=held_tunnel, headers=JSON)
    waited = time.monotonic() - started

    assert_json_error(answer, 504)
    assert 1.4 <= waited < 5


def test_it_returns_503_at_once_when_the_waiting_queue_is_full(
    tight_relay, held_tunnel, wait_until
):
    base = tight_relay.status()["in_flight"]
    with tight_relay.visitor(held_tunnel) as waiting:
        waiting.send(f"GET /hello HTTP/1.1\r\nHost: {waiting.host}\r\n\r\n".encode())
        wait_until(
            lambda: tight_relay.status()["in_flight"] == base + 1,
            message="the first visitor to queue",
        )

        started = time.monotonic()
        answer = tight_relay.get("/hello", name=held_tunnel)
        assert time.monotonic() - started < 1.0

        assert_html_error(answer, 503)
        assert answer.header("retry-after")
        # The one that queued still gets its turn (or its 504), never a 503.
        assert waiting.response().status == 504


def test_a_freed_socket_goes_to_the_visitor_who_waited(tight_relay, local_app, lt_factory):
    client = lt_factory(tight_relay, local_app.port)
    key = uuid.uuid4().hex
    holders = [tight_relay.visitor(client.name, f"127.0.4.{i + 1}") for i in range(2)]
    try:
        for visitor in holders:
            visitor.send(f"GET /slow?key={key} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        local_app.wait_for_waiting(key, 2)
        with tight_relay.visitor(client.name) as waiting:
            waiting.send(f"GET /bytes/3000 HTTP/1.1\r\nHost: {waiting.host}\r\n\r\n".encode())
            local_app.release(key)
            answer = waiting.response()
        assert answer.status == 200 and answer.body == pattern(3000)
    finally:
        local_app.release(key)
        for visitor in holders:
            visitor.close()


def test_it_forgets_a_tunnel_whose_client_stays_away_past_the_grace_period(tight_relay, wait_until):
    name = f"gone-{uuid.uuid4().hex[:8]}"
    assert tight_relay.register(name).status == 200
    assert tight_relay.get("/hello", name=name).status == 503

    wait_until(lambda: tight_relay.sockets(name) is None, 5, "the tunnel to expire")
    assert tight_relay.get("/hello", name=name).status == 404
