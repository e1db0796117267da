"""A visitor who arrives while a tunnel with rules is still registering (its session row being
written) meets the gate: the rules are on the tunnel before its name is claimed.

The records port here blocks `open_session` until the test lets it go, to hold the
registration at its first await; that is the database side, not the data path, which is the
relay's own (`proxy_http`, the gate, the tunnel)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from harness.waiting import wait_until_async

from relay import records
from relay.pool.access import VisitorRules
from relay.pool.registry import get_registry, reset_registry
from relay.proxy.http import proxy_http

NAME = "parked"
WAIT_S = 5.0


class HeldRecords:
    """The installed records, except that open_session waits for `release`."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.entered = threading.Event()
        self.release = threading.Event()

    def open_session(self, **row: Any) -> int:
        self.entered.set()
        self.release.wait(WAIT_S)
        return 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def visitor_scope() -> dict:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", f"{NAME}.localhost".encode()), (b"accept", b"text/plain")],
        "client": ("192.0.2.1", 50000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
    }


async def visit() -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await proxy_http(visitor_scope(), receive, send, NAME)
    return sent


async def register_and_visit(held: HeldRecords, rules: VisitorRules) -> list[dict]:
    registry = get_registry()
    registering = asyncio.ensure_future(
        registry.register(NAME, "owner", "192.0.2.9", 2, user_id=7, raw_pool=False, rules=rules)
    )
    try:
        await wait_until_async(held.entered.is_set, WAIT_S, "parked in open_session")
        assert registry.get(NAME) is not None
        return await asyncio.wait_for(visit(), WAIT_S / 2)
    finally:
        held.release.set()
        tunnel = await asyncio.wait_for(registering, WAIT_S)
        tunnel.close("test over")


def run_with_held_records(rules: VisitorRules) -> list[dict]:
    real = records.get()
    held = HeldRecords(real)
    reset_registry()
    records.install(held)
    try:
        return asyncio.run(register_and_visit(held, rules))
    finally:
        records.install(real)
        reset_registry()


def test_a_visitor_during_registration_is_refused_by_basic_auth():
    sent = run_with_held_records(VisitorRules(basic_auth=("ann:s3cret",)))
    assert sent[0]["status"] == 401
    assert (b"www-authenticate", b'Basic realm="parked", charset="UTF-8"') in sent[0]["headers"]


def test_a_visitor_during_registration_is_refused_by_a_cidr_rule():
    sent = run_with_held_records(VisitorRules(cidr_allow=(("10.0.0.0/8",),)))
    assert sent[0]["status"] == 403
