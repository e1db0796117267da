"""docs/deploy.md's nginx example as a real nginx in front of runrelay: the guide's nginx
snippet and the relay's command, changed only in the certificate's paths (a trustme CA's) and
the database, run in a namespace of their own so the guide's ports (443, 8080) are free. Our
lt (pool connections upgraded through nginx) and the npm client (registration over https
through nginx, raw pools straight to the relay) each serve a visitor and a WebSocket."""

from __future__ import annotations

import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.netns import (
    CLIENT_ADDRESS,
    MOVED_CLIENT_ADDRESS,
    RELAY_ADDRESS,
    Certificates,
    NetworkRun,
    NsRelay,
)
from harness.processes import ROOT
from harness.relay import NPM_LT
from harness.waiting import IO_TIMEOUT_S, poll, wait_until

from bench.procs import client_env

DEPLOY = ROOT / "docs" / "deploy.md"
SECTION = "## TLS in front: Caddy, nginx, HAProxy"
DOMAIN = "tunnels.example"
PUBLIC_PORT = 443
MAX_SOCKETS = 10
BACK_WITHIN_S = 15.0  # a moved client's URL serves again: "within a few seconds"
CERTIFICATE = re.compile(r"ssl_certificate\s+\S+;")
CERTIFICATE_KEY = re.compile(r"ssl_certificate_key\s+\S+;")
# A whole nginx.conf around the guide's snippet (as tests/docs does), with this run's files,
# in the foreground; workers as root to read the test's certificate files.
NGINX_CONF = """\
user root;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
{body}
}}
"""


def guide() -> tuple[dict[str, str], str]:
    """The relay's environment and the nginx snippet, as docs/deploy.md gives them."""
    text = DEPLOY.read_text()
    section = text[text.index(SECTION) :]
    command = re.search(r"```sh[^\n]*\n(.*?)```", section, re.S)
    snippet = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert command and snippet, f"{DEPLOY}: no relay command or nginx fence under {SECTION}"
    words = shlex.split(command.group(1).replace("\\\n", " "))
    env = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
    return env, snippet.group(1)


@dataclass
class Deployment:
    face: NsRelay  # the public side: nginx on 443
    certs: Certificates


@pytest.fixture
def deployed(net: NetworkRun, tmp_path: Path) -> Deployment:
    env, snippet = guide()
    net.relay_as_documented(env)
    where = tmp_path / "nginx"
    where.mkdir()
    certs = Certificates(where, DOMAIN)
    body = CERTIFICATE.sub(f"ssl_certificate {certs.cert_file};", snippet)
    body = CERTIFICATE_KEY.sub(f"ssl_certificate_key {certs.key_file};", body)
    conf = where / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=where, body=body))
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if nginx is None:
        pytest.fail("nginx is not installed; `make test` installs it")
    relay_ns = net.network.relay
    process = net.group.start(relay_ns.command([nginx, "-p", str(where), "-c", str(conf)]))
    face = NsRelay(
        process, relay_ns, PUBLIC_PORT, "https", env, certs.client_context(), certs.ca_file, DOMAIN
    )

    def accepting() -> bool:
        try:
            relay_ns.connect_in(RELAY_ADDRESS, PUBLIC_PORT, IO_TIMEOUT_S).close()
        except OSError:
            return False
        return True

    wait_until(accepting, IO_TIMEOUT_S, f"nginx to listen on {PUBLIC_PORT}:\n{process.output()}")
    net.network.write_hosts(net.network.client, {DOMAIN: RELAY_ADDRESS})
    return Deployment(face, certs)


def connections_from_client(net: NetworkRun) -> list[int]:
    """The relay-side ports of the client's established connections into the relay's
    namespace."""
    out = net.network.relay.run(["ss", "-Htn", "state", "established"])
    ports = []
    for line in out.splitlines():
        fields = line.split()
        local, peer = fields[-2], fields[-1]
        if peer.rpartition(":")[0] == CLIENT_ADDRESS:
            ports.append(int(local.rpartition(":")[2]))
    return ports


def test_our_lt_through_the_guides_nginx_upgrades_its_pool_there(
    net: NetworkRun, deployed: Deployment
) -> None:
    face = deployed.face
    app = net.app()
    lt = net.lt(face, app)
    assert lt.url == f"https://{lt.name}.{DOMAIN}", lt.url
    answer = face.get("/hello", name=lt.name)
    assert answer.status == 200, answer
    assert face.websocket_echo(lt.name, ["one", "two"]) == ["one", "two"]
    # Every connection of lt's goes to nginx's 443: its pool too, upgraded through nginx
    # (waited for: the WebSocket used up one pool connection, and lt opens another).
    wait_until(
        lambda: connections_from_client(net).count(PUBLIC_PORT) >= MAX_SOCKETS,
        IO_TIMEOUT_S,
        f"{MAX_SOCKETS} connections from lt to nginx",
    )
    ports = connections_from_client(net)
    assert set(ports) == {PUBLIC_PORT}, ports


def test_the_npm_client_registers_through_the_guides_nginx_with_raw_pools(
    net: NetworkRun, deployed: Deployment
) -> None:
    face = deployed.face
    app = net.app()
    args = [str(NPM_LT), "--port", str(app.port), "--host", f"https://{DOMAIN}"]
    env = client_env(NODE_EXTRA_CA_CERTS=str(deployed.certs.ca_file))
    process = net.group.start(net.network.client.command(args), env, "npm lt")
    url = process.wait_for_line(r"your url is: (\S+)").group(1)
    name = re.match(r"https://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
    face.wait_for_sockets(name, MAX_SOCKETS)
    answer = face.get("/hello", name=name)
    assert answer.status == 200, answer
    assert face.websocket_echo(name, ["one"]) == ["one"]
    # Its raw pools go straight to the relay's pool port, not through nginx.
    wait_until(
        lambda: len([p for p in connections_from_client(net) if p != PUBLIC_PORT]) == MAX_SOCKETS,
        IO_TIMEOUT_S,
        f"{MAX_SOCKETS} raw pool connections from the npm client",
    )


def test_a_moved_client_behind_the_guides_nginx_gets_its_url_back(
    net: NetworkRun, deployed: Deployment
) -> None:
    """Behind nginx every pool connection comes from nginx: the relay tells the client's
    move by the address nginx forwards (X-Forwarded-For, RELAY_TRUSTED_PROXIES)."""
    face = deployed.face
    app = net.app()
    lt = net.lt(face, app)
    assert face.serves(lt.name)
    net.network.client.set_address(CLIENT_ADDRESS, MOVED_CLIENT_ADDRESS)
    moved = time.monotonic()
    back = poll(lambda: face.serves(lt.name), BACK_WITHIN_S)
    print(f"behind nginx: served again {time.monotonic() - moved:.2f} s after the move")
    assert back, f"no answer within {BACK_WITHIN_S:g} s of the move:\n{lt.process.output()}"
    face.wait_for_sockets(lt.name, MAX_SOCKETS)
