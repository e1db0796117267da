"""A replay whose caller leaves is ended at once (relay/site_call.py): the pool socket it
held is closed, so the app's connection is freed, long before the replay's own deadline
(RELAY_RESPONSE_TIMEOUT_S, 60 s by default). A real relay with its defaults; a fake tunnel
client (tests/harness/fake_client.py) plays the app that trickles its answer, so the test
sees the relay close the socket."""

from __future__ import annotations

import json

from harness.fake_client import FakeTunnelClient
from harness.http import build_request
from harness.relay import Relay, manage

from relay.protocol import DEFAULT_RESPONSE_TIMEOUT_S, SITE_DISCONNECT_WAIT_S

SETUP = """
from django.contrib.auth import get_user_model
from tunnels.models import ApiToken
print(ApiToken.issue(get_user_model().objects.create_user("owner"), name="e2e")[1])
"""
# The caller left: the socket is closed within the wait Django gets to end the view, and
# some slack for a loaded machine; far less than the replay's own deadline.
FREED_WITHIN_S = SITE_DISCONNECT_WAIT_S + 3
assert FREED_WITHIN_S < DEFAULT_RESPONSE_TIMEOUT_S / 4


def test_a_replay_whose_caller_leaves_frees_its_pool_socket_at_once(relay_factory) -> None:
    relay: Relay = relay_factory()
    token = manage(relay, "shell", "-c", SETUP).strip().splitlines()[-1]
    auth = [("Authorization", f"Bearer {token}")]
    client = FakeTunnelClient(relay, headers=auth)
    try:
        client.connect(1)
        with relay.visitor(client.name) as visitor:
            visitor.send(build_request("GET", "/feed", relay.host(client.name), [], None))
            pool, _ = client.next_request()
            pool.respond(200, b"first answer")
            assert visitor.response().status == 200
        listed = relay.get(f"/api/tunnels/{client.name}/requests", headers=auth)
        original = listed.json()["requests"][0]["id"]
        path = f"/api/tunnels/{client.name}/requests/{original}/replay"
        client.connect(1)
        caller = relay.visitor()
        caller.send(build_request("POST", path, caller.host, auth, json.dumps({}).encode()))
        pool, request = client.next_request()
        assert request.target == "/feed"
        pool.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"." * 10)
        caller.sock.close()  # as `curl -m 3` gives up: the app goes on trickling
        assert pool.is_closed(FREED_WITHIN_S), "the replay went on after its caller left"
        kept = relay.get(f"/api/tunnels/{client.name}/requests", headers=auth).json()
        assert kept["requests"][0]["replay_of"] == original
        assert kept["requests"][0]["error"] == "the replay was cancelled"
        relay.get("/api/status")  # the relay serves on
        assert "took too long to shut down" not in relay.process.output()
    finally:
        client.close()
