"""The residual risk of raw pool sockets, as docs/security.md states it.

A pool socket is raw TCP with no credential: the relay accepts it from the registering
address, whatever token the registration carried. So someone who shares that address (same
NAT, CI runner or host) and holds no token can take a free slot of a token-protected tunnel
and read and answer its visitors' requests. These tests keep that paragraph true: if pools
are ever bound to a secret for every client, they fail and docs/security.md must change with them.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable

from harness.fake_client import PoolSocket
from harness.http import build_request
from harness.processes import ROOT
from harness.relay import Relay, issue_token
from harness.waiting import IO_TIMEOUT_S

SECURITY_PAGE = ROOT / "docs" / "security.md"


def security_model() -> str:
    text = SECURITY_PAGE.read_text()
    start = text.index("## Raw pool sockets")
    end = text.find("\n## ", start + 1)
    return " ".join(text[start : end if end != -1 else None].split())


def test_the_security_model_states_the_raw_pool_risk_and_what_operators_can_do() -> None:
    section = security_model()
    paragraph = section.removeprefix("## Raw pool sockets")
    for words in ["no token", "same NAT", "pool port", "visitors' requests", "answer"]:
        assert words in paragraph, words
    for remedy in ["firewall", "RELAY_POOL_ALLOW_ANY_IP"]:
        assert remedy in paragraph, remedy


def register(relay: Relay, token: str) -> tuple[str, int]:
    answer = relay.get("/?new", headers=[("Authorization", f"Bearer {token}")])
    assert answer.status == 200, answer
    return answer.json()["id"], answer.json()["port"]


def test_a_tokenless_neighbour_on_the_same_address_can_serve_a_token_protected_tunnel(
    relay_factory: Callable[..., Relay],
) -> None:
    # Tokens required, as on a public relay: the setting this risk is about.
    relay = relay_factory(RELAY_ALLOW_ANONYMOUS="false", SECRET_KEY=secrets.token_urlsafe(50))
    assert relay.get("/?new").status == 401  # the neighbour cannot register anything
    name, port = register(relay, issue_token(relay, "pool-owner", "laptop"))
    # The neighbour needs only the port (a scan of the range finds it) and the same address.
    intruder = PoolSocket(socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S))
    try:
        relay.wait_for_sockets(name, 1)
        with relay.visitor(name) as visitor:
            secret_headers = [("Cookie", "session=the-visitors"), ("Authorization", "Basic eDp5")]
            visitor.send(build_request("GET", "/account", visitor.host, secret_headers))
            request = intruder.read_request()
            assert request.header("cookie") == "session=the-visitors"
            assert request.header("authorization") == "Basic eDp5"
            intruder.respond(200, b"served by the neighbour")
            answer = visitor.response()
        assert answer.status == 200 and answer.body == b"served by the neighbour", answer
    finally:
        intruder.close()


def test_a_pool_socket_from_another_address_is_refused_by_default(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory(RELAY_ALLOW_ANONYMOUS="false", SECRET_KEY=secrets.token_urlsafe(50))
    name, port = register(relay, issue_token(relay, "pool-owner", "laptop"))
    stranger = PoolSocket(
        socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S, ("127.0.0.2", 0))
    )
    try:
        assert stranger.is_closed(), "a pool socket from another address was kept"
        assert relay.sockets(name) == 0
    finally:
        stranger.close()
