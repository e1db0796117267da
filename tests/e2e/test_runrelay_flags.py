"""Each runrelay flag configures the same thing as its environment variable.

For every flag a real relay is started twice, once with the flag and once with the
variable, and the behaviour that depends on it is checked the same way on both: the bare
domain's registration, API and admin (ALLOWED_HOSTS), where pool sockets listen
(RELAY_POOL_BIND follows the bind address), the admin's trusted origin under https
(CSRF_TRUSTED_ORIGINS follows the port), and a node's name and advertised address.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import urllib.parse
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from harness.proc import listening
from harness.processes import PYTHON, Process, ProcessGroup
from harness.relay import free_port, relay_env

START_S = 20.0


@pytest.fixture
def db(relay_template_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"relay-{uuid.uuid4().hex[:8]}.sqlite3"
    shutil.copyfile(relay_template_db, path)
    return path


def start(group: ProcessGroup, db: Path, flags: list[str], **env: str) -> tuple[Process, int]:
    """`runrelay FLAGS` with these variables; the process and its public port."""
    process = group.start(
        [PYTHON, "manage.py", "runrelay", *flags], relay_env(db, **env), name="relay"
    )
    match = process.wait_for_line(r"tunnelsite relay listening on http://\S+:(\d+)", START_S)
    return process, int(match.group(1))


def request(
    address: str,
    port: int,
    method: str,
    target: str,
    host: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> tuple[int, dict[str, str], str]:
    with closing(http.client.HTTPConnection(address, port, timeout=10)) as conn:
        conn.request(method, target, body=body, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()


# (the flags, the variables) giving the same configuration
DOMAIN = "tunnels.example.test"
DOMAIN_WAYS = {
    "flag": (["--port", "0", "--domain", DOMAIN], {}),
    "env": (["--port", "0"], {"RELAY_DOMAIN": DOMAIN}),
}


@pytest.mark.parametrize("way", DOMAIN_WAYS)
def test_the_bare_domain_answers_registration_api_and_admin(group, db, way):
    flags, env = DOMAIN_WAYS[way]
    _, port = start(group, db, flags, **env)
    host = f"{DOMAIN}:{port}"

    status, _, body = request("127.0.0.1", port, "GET", "/?new", host)
    assert status == 200, body
    assert re.fullmatch(rf"http://[a-z0-9-]+\.{re.escape(DOMAIN)}:{port}", json.loads(body)["url"])
    assert request("127.0.0.1", port, "GET", "/api/status", host)[0] == 200
    assert request("127.0.0.1", port, "GET", "/admin/login/", host)[0] == 200
    # The old default domain is not this relay's any more.
    assert request("127.0.0.1", port, "GET", "/api/status", f"localhost:{port}")[0] == 400


BIND_WAYS = {
    "flag": (["--port", "0", "--bind", "127.0.0.2"], {}),
    "env": (["--port", "0"], {"RELAY_BIND": "127.0.0.2"}),
}


def accepts(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("way", BIND_WAYS)
def test_pool_sockets_listen_on_the_bind_address(group, db, way):
    flags, env = BIND_WAYS[way]
    process, port = start(group, db, flags, **env)
    process.wait_for_line(r"pool ports: ephemeral on 127\.0\.0\.2$", START_S)

    status, _, body = request("127.0.0.2", port, "GET", "/?new", f"localhost:{port}")
    assert status == 200, body
    pool_port = int(json.loads(body)["port"])
    assert accepts("127.0.0.2", pool_port)
    # The relay's own listeners on that port, not whether 127.0.0.1 answers there: another
    # process (another relay of a parallel run) may listen on 127.0.0.1 at the same number.
    assert {address for address, number in listening(process.proc.pid) if number == pool_port} == {
        "127.0.0.2"
    }


PORT_WAYS = {"flag": "--port", "env": "RELAY_PORT"}


@pytest.mark.parametrize("way", PORT_WAYS)
def test_the_admin_trusts_its_https_origin_on_the_port_given(group, db, way):
    """Behind a TLS proxy (RELAY_PUBLIC_SCHEME=https) the admin's login form posts from
    https://DOMAIN:PORT; Django trusts that origin only if the port is the relay's."""
    chosen = free_port()
    flags = ["--port", str(chosen)] if way == "flag" else []
    env = {"RELAY_PORT": str(chosen)} if way == "env" else {}
    _, port = start(group, db, flags, RELAY_PUBLIC_SCHEME="https", **env)
    assert port == chosen
    host = f"localhost:{port}"

    status, headers, page = request("127.0.0.1", port, "GET", "/admin/login/", host)
    assert status == 200
    cookie = headers["Set-Cookie"].split(";", 1)[0]  # __Host-csrftoken=...
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": "nobody", "password": "wrong"}
    )
    status, _, page = request(
        "127.0.0.1",
        port,
        "POST",
        "/admin/login/",
        host,
        {
            "Cookie": cookie,
            "Origin": f"https://{host}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        form,
    )
    assert status == 200, page[:300]  # the form again, with "enter the correct username"
    assert "correct username" in page

    status, _, body = request("127.0.0.1", port, "GET", "/?new", host)
    assert re.fullmatch(rf"https://[a-z0-9-]+\.localhost:{port}", json.loads(body)["url"])


NODE_WAYS = {
    "flag": ["--node-name", "n1", "--advertise", "127.0.0.1:{port}"],
    "env": {"RELAY_NODE_NAME": "n1", "RELAY_ADVERTISE": "127.0.0.1:{port}"},
}


@pytest.mark.parametrize("way", NODE_WAYS)
def test_a_node_name_and_advertised_address_are_the_same_by_flag_or_variable(group, db, way):
    chosen = free_port()
    flags = ["--port", str(chosen)]
    # A node refuses the public development key (hop markers), so both ways get a real one.
    env: dict[str, str] = {"SECRET_KEY": "runrelay-flag-tests-" + uuid.uuid4().hex * 2}
    if way == "flag":
        flags += [part.format(port=chosen) for part in NODE_WAYS["flag"]]
    else:
        env.update({key: value.format(port=chosen) for key, value in NODE_WAYS["env"].items()})
    process, port = start(group, db, flags, **env)
    process.wait_for_line(rf"node n1 advertised as 127\.0\.0\.1:{chosen}$", START_S)

    name = f"node-{uuid.uuid4().hex[:8]}"
    status, _, body = request("127.0.0.1", port, "GET", f"/{name}", f"localhost:{port}")
    assert status == 200, body
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT node FROM tunnels_tunnel WHERE subdomain = ?", (name,))
        assert rows.fetchall() == [("n1",)]


TCP_WAYS = {
    "flag": (["--port", "0", "--bind", "127.0.0.2", "--domain", DOMAIN], {}),
    "env": (["--port", "0"], {"RELAY_BIND": "127.0.0.2", "RELAY_DOMAIN": DOMAIN}),
}
_TOKEN = """
from django.contrib.auth import get_user_model
from tunnels.models import ApiToken
print(ApiToken.issue(get_user_model().objects.create_user("tess"), name="tcp")[1])
"""


@pytest.mark.parametrize("way", TCP_WAYS)
def test_tcp_ports_listen_on_the_bind_address_and_urls_name_the_domain(group, db, way):
    """TCP tunnels' ports follow --bind and their tcp:// URLs --domain, as RELAY_BIND and
    RELAY_DOMAIN (settings derived again for runrelay's flags, as the pool's bind is)."""
    flags, env = TCP_WAYS[way]
    tcp_port = free_port()
    env = {**env, "RELAY_TCP_PORTS": str(tcp_port)}
    token = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", _TOKEN],
        env=relay_env(db),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()[-1]  # (after the shell's own line about its imports)
    process, port = start(group, db, flags, **env)
    process.wait_for_line(
        rf"TCP tunnels: ports {tcp_port}-{tcp_port} on 127\.0\.0\.2, "
        rf"named tcp://{re.escape(DOMAIN)}:PORT$",
        START_S,
    )
    headers = {"Authorization": f"Bearer {token}", "X-Tunnelsite-Kind": "tcp"}
    status, _, body = request("127.0.0.2", port, "GET", "/?new", f"{DOMAIN}:{port}", headers)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["tcp_port"] == tcp_port
    assert answer["url"] == f"tcp://{DOMAIN}:{tcp_port}"
    assert accepts("127.0.0.2", tcp_port)
    assert {address for address, number in listening(process.proc.pid) if number == tcp_port} == {
        "127.0.0.2"
    }


def test_runrelay_says_when_tcp_tunnels_are_off(group, db):
    process, _ = start(group, db, ["--port", "0"])
    process.wait_for_line(r"TCP tunnels: off \(set RELAY_TCP_PORTS, e\.g\. 20000-20999\)$", START_S)
