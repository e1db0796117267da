"""A WebSocket whose handshake the relay refuses is logged with the status the visitor got
(relay/access_log.py): a refusal is written on the socket by the flow control
(relay/proxy/ws_flow.py), past ASGI's `send`, and was once logged as 0, which docs/logs.md
says means "the visitor left before any answer"."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from harness.quota_clock import fresh_minute
from harness.relay import Relay
from harness.waiting import wait_until
from harness.websocket import run_websocket
from websockets.exceptions import InvalidStatus

from relay import access_log
from relay.proxy.websocket import refuse
from relay.proxy.ws_flow import WsFlow


def handshake_status(relay: Relay, name: str) -> int:
    async def opened(ws: Any) -> None:
        raise AssertionError("the WebSocket opened")

    with pytest.raises(InvalidStatus) as caught:
        run_websocket(relay, name, opened)
    return caught.value.response.status_code


def test_a_websocket_refused_for_quota_or_an_unknown_name_is_logged_with_its_status(
    relay_factory, our_launcher, local_app
) -> None:
    relay = relay_factory(
        RELAY_ACCESS_LOG="true",
        RELAY_LOG_FORMAT="json",
        RELAY_DEFAULT_PLAN_MAX_REQUESTS_PER_MINUTE=1,  # what makes the 429
    )
    lt = our_launcher(relay, local_app.port)
    fresh_minute(need_s=20)  # the one request and the refusal in the same minute
    assert relay.get("/hello", name=lt.name).status == 200
    assert handshake_status(relay, lt.name) == 429
    assert handshake_status(relay, "nosuchtunnel") == 404

    def websockets() -> list[int]:
        records = [json.loads(x) for x in relay.process.output().splitlines() if x[:1] == "{"]
        found = [r["status"] for r in records if r.get("kind") == "websocket"]
        return found if len(found) == 2 else []

    assert wait_until(websockets, message="two WebSocket access lines") == [429, 404]


class Handshake:
    """Daphne's WebSocket protocol as WsFlow.refuse meets it: a handshake not yet answered."""

    def __init__(self) -> None:
        self.transport = object()
        self.handshake_deferred = object()
        self.sent = b""

    def sendData(self, data: bytes) -> None:  # noqa: N802  (autobahn's name)
        self.sent += data

    def dropConnection(self, abort: bool) -> None:  # noqa: N802
        pass


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("status", [401, 403, 404, 429, 503, 504])
def test_every_handshake_refusal_is_logged_with_the_status_sent(status: int) -> None:
    """Each refusal path of relay/proxy/websocket.py ends in the one `refuse`."""
    handshake = Handshake()
    scope = {"path": "/ws", "client": ("127.0.0.1", 1), "headers": []}
    scope["extensions"] = {access_log.WS_FLOW_KEY: WsFlow(handshake, 1024)}

    async def proxy(scope: Any, receive: Any, send: Any, name: str) -> None:
        await refuse(scope, send, status, "refused", 60 if status == 429 else None)

    async def never_sent(message: Any) -> None:
        raise AssertionError(message)

    handler = Lines()
    logger = logging.getLogger("relay.access")
    logger.addHandler(handler)
    try:
        asyncio.run(access_log.websocket(proxy, scope, never_sent, never_sent, "a-name"))
    finally:
        logger.removeHandler(handler)
    assert handshake.sent.startswith(f"HTTP/1.1 {status} ".encode())
    (record,) = handler.records
    assert record.__dict__["status"] == status
