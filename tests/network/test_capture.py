"""tcpdump on the link between our lt and the relay while a visitor's request and its response
carry a random marker: over the relay's own TLS, with lt's pool upgraded on the relay's port,
neither the marker nor the API token ever crosses that link in clear. The same capture of a
plain-http relay shows both, so the test can see them when they are there."""

from __future__ import annotations

import re
import secrets
import signal
from pathlib import Path

from harness.netns import DEFAULT_MAX_SOCKETS, NetworkRun, NsRelay, tcp_ports_of
from harness.relay import NPM_LT, issue_token

from bench.procs import client_env

# tcpdump writes out what it holds and exits on SIGINT; this long at most.
CAPTURE_STOP_S = 10.0


def carry_a_marker(net: NetworkRun, relay: NsRelay, pcap: Path, *flags: str) -> tuple[bytes, bytes]:
    """A token's lt serving a request and a response that both carry a fresh marker, all of
    it captured on the client's end of the link; (marker, token)."""
    token = issue_token(relay, f"user-{secrets.token_hex(4)}", "capture")  # type: ignore[arg-type]
    marker = f"marker-{secrets.token_hex(16)}"
    tcpdump = net.capture(net.network.client, pcap)
    app = net.app()
    lt = net.lt(relay, app, *flags, env={"LT_TOKEN": token})
    answer = relay.get("/headers", name=lt.name, headers=[("X-Marker", marker)])
    assert answer.status == 200, answer
    assert marker in answer.text, answer  # the app echoed it: the response carried it too
    lt.process.stop()
    tcpdump.signal(signal.SIGINT)
    tcpdump.wait(CAPTURE_STOP_S)
    return marker.encode(), token.encode()


def test_no_marker_nor_token_crosses_the_link_in_clear_over_tls(
    net: NetworkRun, tmp_path: Path
) -> None:
    relay = net.relay()
    pcap = tmp_path / "tls.pcap"
    marker, token = carry_a_marker(net, relay, pcap)
    captured = pcap.read_bytes()
    assert len(captured) > 10_000, "the capture saw too little to mean anything"
    in_clear = {"marker": marker in captured, "token": token in captured}
    assert in_clear == {"marker": False, "token": False}, "crossed the link in clear"
    # Every connection between lt and the relay went to its one TLS port: registration and
    # every pool connection (upgraded there, none to a raw pool port).
    assert tcp_ports_of(captured, relay.ns.address) == {relay.port}


def test_the_same_capture_of_a_plain_http_relay_shows_the_marker_and_the_token(
    net: NetworkRun, tmp_path: Path
) -> None:
    relay = net.relay(tls=False)
    pcap = tmp_path / "plain.pcap"
    # lt sends a token over plain http to a host off loopback only with --insecure.
    marker, token = carry_a_marker(net, relay, pcap, "--insecure")
    captured = pcap.read_bytes()
    # The request on its way to lt, the response on its way back; the registration's token.
    seen = {"marker": captured.count(marker) >= 2, "token": token in captured}
    assert seen == {"marker": True, "token": True}, "the capture missed what was in clear"
    assert relay.port in tcp_ports_of(captured, relay.ns.address)


def test_with_the_npm_client_over_https_only_its_registration_is_encrypted(
    net: NetworkRun, tmp_path: Path
) -> None:
    """What docs/deploy.md says of the npm client: it registers over the relay's https, but
    its raw pool connections carry visitors' requests and responses in clear."""
    relay = net.relay()
    assert relay.ca_file is not None
    pcap = tmp_path / "npm.pcap"
    marker = f"marker-{secrets.token_hex(16)}"
    tcpdump = net.capture(net.network.client, pcap)
    app = net.app()
    args = [str(NPM_LT), "--port", str(app.port), "--host", relay.url]
    env = client_env(NODE_EXTRA_CA_CERTS=str(relay.ca_file))
    npm = net.group.start(net.network.client.command(args), env, "npm lt")
    url = npm.wait_for_line(r"your url is: (\S+)").group(1)
    assert url.startswith("https://"), url
    name = re.match(r"https://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
    relay.wait_for_sockets(name, DEFAULT_MAX_SOCKETS)
    answer = relay.get("/headers", name=name, headers=[("X-Marker", marker)])
    assert answer.status == 200 and marker in answer.text, answer
    npm.stop()
    tcpdump.signal(signal.SIGINT)
    tcpdump.wait(CAPTURE_STOP_S)
    captured = pcap.read_bytes()
    assert captured.count(marker.encode()) >= 2, "the raw pool's bytes were not in clear"
    ports = tcp_ports_of(captured, relay.ns.address)
    assert relay.port in ports and len(ports) >= 2, ports  # https registration, raw pool port
