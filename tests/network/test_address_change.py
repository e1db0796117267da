"""A laptop moves from Wi-Fi to tethering: the client's address changes mid-session. Our lt's
pool connections are bound to their tunnel by its secret, not to the address they came from,
so the same URL serves again within seconds; and a client at another address, without the
secret, cannot take the name meanwhile (409), nor can one left at its old address."""

from __future__ import annotations

import secrets
import time

import pytest
from harness.http import Answer
from harness.netns import (
    CLIENT_ADDRESS,
    MOVED_CLIENT_ADDRESS,
    OTHER_CLIENT_ADDRESS,
    NetworkRun,
    NsRelay,
)
from harness.relay import issue_token
from harness.waiting import poll

# How long the URL may stay dark after the move: "within a few seconds".
BACK_WITHIN_S = 15.0


def take(relay: NsRelay, net: NetworkRun, name: str) -> Answer:
    """Another client's registration of `name`, from another address on the client's side."""
    return relay.get(
        f"/{name}",
        ns=net.network.client,
        source=OTHER_CLIENT_ADDRESS,
        headers=[("User-Agent", "tunnelsite-lt/0")],
    )


@pytest.mark.parametrize("owner", ["anonymous", "token"])
def test_the_same_url_serves_again_after_the_clients_address_changes(
    net: NetworkRun, owner: str
) -> None:
    relay = net.relay()
    env = {}
    if owner == "token":
        env["LT_TOKEN"] = issue_token(relay, f"u-{secrets.token_hex(4)}", "moving")  # type: ignore[arg-type]
    app = net.app()
    lt = net.lt(relay, app, env=env)
    assert relay.serves(lt.name)

    net.network.client.set_address(CLIENT_ADDRESS, MOVED_CLIENT_ADDRESS)
    moved = time.monotonic()
    back = poll(lambda: relay.serves(lt.name), BACK_WITHIN_S)
    took = time.monotonic() - moved
    print(f"{owner} tunnel {lt.name}: served again {took:.2f} s after the address changed")
    assert back, f"the URL did not serve again within {BACK_WITHIN_S:g} s:\n{lt.process.output()}"
    relay.wait_for_sockets(lt.name, 10)
    urls = [line for line in lt.process.output().splitlines() if "your url is:" in line]
    assert urls == [f"your url is: {lt.url}"], urls  # the same URL, never another

    # (Added after the move: deleting a subnet's first address deletes the others on it.)
    net.network.client.add_address(OTHER_CLIENT_ADDRESS)
    refused = take(relay, net, lt.name)
    assert refused.status == 409, refused
    assert relay.serves(lt.name)
    # The address the laptop left, now another client's (review finding 1): an anonymous
    # tunnel moved with its owner, so neither a takeover nor a registration gets it.
    net.network.client.add_address(CLIENT_ADDRESS)
    for target in (f"/{lt.name}?takeover=1", f"/{lt.name}"):
        left_behind = relay.get(
            target,
            ns=net.network.client,
            source=CLIENT_ADDRESS,
            headers=[
                ("User-Agent", "tunnelsite-lt/0"),
                ("X-Tunnelsite-Client", "left-behind-0001"),
                ("X-Tunnelsite-Pool", "upgrade"),
            ],
        )
        assert left_behind.status == 409, left_behind
    assert relay.serves(lt.name)
    assert [line for line in lt.process.output().splitlines() if "your url is:" in line] == urls
