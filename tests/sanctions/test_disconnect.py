"""The admin's Disconnect lasts: a real relay on Redis, the npm client and our lt, and the
Disconnect sent from another process as the admin sends it (tunnels/control.py). The name,
and any name of the same owner, is refused for RELAY_DISCONNECT_COOLDOWN_S with the reason;
after it a registration works again.

RELAY_DISCONNECT_COOLDOWN_S is the setting under test, so these relays shorten it (the
default, 60 s, is checked by a Django test against the admin)."""

from __future__ import annotations

import time

from harness.processes import Process
from harness.relay import Relay, manage
from harness.waiting import poll, unique_name, wait_until

from relay.protocol import REFUSAL_DISCONNECTED, REFUSAL_HEADER

COOLDOWN_S = 6.0  # long enough to watch the clients be refused, short enough to wait out
DISCONNECTED = "was closed by the relay's operator; it can be registered again in"
NPM_AGENT = [("User-Agent", "axios/0.21.4")]
EXIT_S = 20.0  # a refused or orphaned client is gone well before this


def disconnect(relay: Relay, name: str) -> float:
    """The admin's Disconnect of `name`; when it was sent (monotonic)."""
    manage(
        relay, "shell", "-c", f"from tunnels import control; assert control.disconnect([{name!r}])"
    )
    return time.monotonic()


def assert_refused_while_cooling(relay: Relay, name: str) -> None:
    refused = relay.register(name)
    assert refused.status == 403, refused
    assert refused.header(REFUSAL_HEADER) == REFUSAL_DISCONNECTED
    wait_s = int(refused.header("retry-after") or 0)
    assert 1 <= wait_s <= COOLDOWN_S, refused
    assert refused.json()["message"] == (
        f"{name} was closed by the relay's operator; it can be registered again in {wait_s} s."
    )
    npm = relay.request("GET", f"/{name}", headers=NPM_AGENT)  # exits printing it
    assert npm.status == 203 and DISCONNECTED in npm.json()["message"], npm
    other = relay.register()  # ?new from the same owner (127.0.0.1): refused too
    assert other.status == 403 and other.header(REFUSAL_HEADER) == REFUSAL_DISCONNECTED


def stays_off(relay: Relay, name: str, until: float) -> None:
    """Nobody brings the name back before `until` (polled, not slept)."""
    back = poll(lambda: relay.sockets(name) is not None, max(0.0, until - time.monotonic()))
    assert not back, f"{name} was registered again during its cool-down"


def test_a_disconnected_npm_tunnel_stays_off_for_the_cooldown_then_registers(
    redis_relay_factory, local_app, lt_factory
):
    relay = redis_relay_factory(RELAY_DISCONNECT_COOLDOWN_S=COOLDOWN_S)
    lt = lt_factory(relay, local_app.port, subdomain=unique_name("npm"))
    assert relay.get("/hello", name=lt.name).status == 200
    sent = disconnect(relay, lt.name)
    wait_until(lambda: relay.sockets(lt.name) is None, 5, "the tunnel to close")
    assert_refused_while_cooling(relay, lt.name)
    # The npm client ends when its pool port goes; restarted (a supervisor's loop), with the
    # name or without, it is refused, prints why and exits.
    assert lt.process.wait(EXIT_S) != 0
    for subdomain, said in (
        (lt.name, f"{lt.name} {DISCONNECTED}"),
        (None, f"the relay's operator closed your tunnel {lt.name}"),  # a new name: it waits
    ):
        again = lt_factory.start(relay, local_app.port, subdomain=subdomain)
        assert again.wait(EXIT_S) != 0
        assert said in again.output()
        assert "your url is" not in again.output()
    stays_off(relay, lt.name, sent + COOLDOWN_S - 1.5)
    assert relay.get("/hello", name=lt.name).status == 404
    again = wait_until(
        lambda: (answer := relay.register(lt.name)).status == 200 and answer,
        COOLDOWN_S + 5,
        "a registration after the cool-down",
    )
    assert again.json()["id"] == lt.name


def test_our_lt_is_told_it_was_disconnected_and_the_name_stays_off(
    redis_relay_factory, local_app, our_launcher
):
    relay = redis_relay_factory(RELAY_DISCONNECT_COOLDOWN_S=COOLDOWN_S)
    name = unique_name("ours")
    lt = our_launcher(relay, local_app.port, "--subdomain", name)
    assert relay.get("/hello", name=name).status == 200
    sent = disconnect(relay, name)
    process: Process = lt.process
    # It registers again (after its backoff) and is refused with the operator's reason.
    wait_until(lambda: DISCONNECTED in process.output(), COOLDOWN_S, "lt to print the refusal")
    assert_refused_while_cooling(relay, name)
    stays_off(relay, name, sent + COOLDOWN_S - 1.5)
    lt.process.stop()
    wait_until(
        lambda: relay.register(name).status == 200, COOLDOWN_S + 5, "a registration after it"
    )
