"""An account's bytes for today survive a relay restart (SQLite, and Redis) and a new tunnel;
WebSocket message bytes count, an open WebSocket is closed when they run out, and a new one is
refused at its handshake."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3

import pytest
import redis
from harness.processes import ProcessGroup
from harness.quota_clock import fresh_minute
from harness.relay import RELAY_COMMAND, Relay
from harness.waiting import unique_name, wait_until
from harness.websocket import run_websocket
from websockets.exceptions import ConnectionClosed, InvalidStatus

from relay.protocol import DEFAULT_FLUSH_S as FLUSH_S
from relay.protocol import USAGE_KEY_PREFIX

DAY_BYTES = 100_000
BODY = 60_000  # two of these pass the day's allowance: the second is let through, the third not


def restarted(relay: Relay, group: ProcessGroup, crash: bool = False) -> Relay:
    """Stop `relay` as an operator does (SIGTERM: it drains and writes its counts), or crash
    it (SIGKILL: only the batches already written count), then start it again on the same
    database and settings."""
    relay.process.signal(signal.SIGKILL if crash else signal.SIGTERM)
    assert relay.process.wait() == (-signal.SIGKILL if crash else 0)
    process = group.start(list(RELAY_COMMAND), relay.env, name="relay again")
    port = process.wait_for_line(r"tunnelsite relay listening on http://127\.0\.0\.1:(\d+)")
    return Relay(process=process, port=int(port.group(1)), env=relay.env)


def _stored_day_bytes(relay: Relay, store: str) -> int:
    """The account's bytes for today as the store holds them (what a crash keeps)."""
    if store == "redis":
        client = redis.Redis.from_url(relay.env["REDIS_URL"], socket_timeout=5)
        try:
            keys = client.keys(f"{USAGE_KEY_PREFIX}*:day:*")
            return sum(int(client.hget(key, "b") or 0) for key in keys)
        finally:
            client.close()
    path = relay.env["DATABASE_URL"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        (total,) = db.execute(
            "SELECT coalesce(sum(bytes), 0) FROM tunnels_usagewindow WHERE \"window\" = 'day'"
        ).fetchone()
    return int(total)


@pytest.mark.parametrize("crash", [False, True], ids=["stopped", "killed"])
@pytest.mark.parametrize("store", ["database", "redis"])
def test_the_days_bytes_survive_a_restart_and_a_new_tunnel(
    store, crash, relay_factory, redis_url, our_launcher, local_app
) -> None:
    settings = {"RELAY_DEFAULT_PLAN_MAX_BYTES_PER_DAY": DAY_BYTES}
    if store == "redis":
        settings["REDIS_URL"] = redis_url
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        client.flushdb()  # each case counts from zero (the module's cases share the index)
        client.close()
    relay = relay_factory(**settings)
    lt = our_launcher(relay, local_app.port)
    assert [relay.get(f"/bytes/{BODY}", name=lt.name).status for _ in range(2)] == [200, 200]
    assert relay.get("/hello", name=lt.name).status == 429
    if crash:  # a batch is written while the relay runs (RELAY_FLUSH_S), not only at its stop
        wait_until(
            lambda: _stored_day_bytes(relay, store) >= 2 * BODY,
            3 * FLUSH_S,
            "a batch of the account's bytes in the store",
        )
        assert "usage store unavailable" not in relay.process.output()

    again = restarted(relay, relay_factory.group, crash=crash)
    lt = our_launcher(again, local_app.port, "--subdomain", unique_name("again"))
    refused = again.get("/hello", name=lt.name)
    assert refused.status == 429, refused
    page = refused.body.decode()
    assert "used its 98 KiB of traffic for today (plan default)" in page
    assert "it resets at 00:00:00 UTC" in page


def test_websocket_bytes_count_and_close_an_open_one_when_they_run_out(
    relay_factory, our_launcher, local_app
) -> None:
    relay = relay_factory(RELAY_DEFAULT_PLAN_MAX_BYTES_PER_DAY=DAY_BYTES // 10)
    lt = our_launcher(relay, local_app.port)
    key = unique_name("ws")

    async def session(ws) -> tuple[int, int, str]:
        echoed = 0
        try:
            for _ in range(20):  # 2,000 bytes each way per message: the 3rd passes 10,000
                await ws.send("x" * 2000)
                echoed += len(await ws.recv())
        except ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), 5)
        return echoed, ws.close_code or 0, ws.close_reason or ""

    echoed, code, _ = run_websocket(relay, lt.name, session, key=key)
    assert 4000 <= echoed < 20 * 2000
    assert code == 4008  # 1008 in the range Daphne can send (visitor_close_code)
    closed = wait_until(lambda: local_app.get(f"/ws-closed?key={key}").body, 5, "the app's close")
    assert closed == b"1008"  # the app is told with 1008 and why

    async def refused(ws) -> None:
        raise AssertionError("a WebSocket opened past the day's bytes")

    with pytest.raises(InvalidStatus) as caught:
        run_websocket(relay, lt.name, refused)
    assert caught.value.response.status_code == 429
    assert b"of traffic for today" in caught.value.response.body


def test_our_lt_shows_the_accounts_limits_and_the_refusal_names_them(
    relay_factory, our_launcher, local_app
) -> None:
    relay = relay_factory(RELAY_DEFAULT_PLAN_MAX_REQUESTS_PER_MINUTE=3)
    lt = our_launcher(relay, local_app.port)
    line = lt.process.wait_for_line(r"limits: (.*)").group(1)
    assert line.startswith("3 requests a minute")
    assert "(plan default, per account, all its tunnels)" in line
    fresh_minute(need_s=25)  # the limit holds until lt's next look (LIMIT_POLL_S, 10 s)
    answers = [relay.get("/hello", name=lt.name) for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    page = answers[3].body.decode()
    assert "used its 3 requests for this minute (plan default)" in page
    status = relay.get(f"/api/tunnels/{lt.name}/status").json()
    assert "used its 3 requests for this minute" in status["limit_reached"]
    said = lt.process.wait_for_line(r"limit reached: (.*)", timeout=15).group(1)
    assert said.startswith("This tunnel's account has used its 3 requests for this minute")
