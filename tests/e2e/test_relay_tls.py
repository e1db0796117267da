"""runrelay serving https itself (issue 12, item 1): --tls-cert/--tls-key, SIGHUP, the
redirect port.

Every relay here is a real `runrelay` with a trustme wildcard certificate, as certbot's DNS-01
gives one: for DOMAIN and `*.DOMAIN`, and 127.0.0.1, where the clients register. DOMAIN is
`tls.localhost`, not the tests' usual `localhost`: OpenSSL (so Python, node and curl) never
lets a wildcard stand for a whole label below a one-label name, so `*.localhost` verifies for
no tunnel. Visitors verify the certificate against the trustme CA and nothing else. Both
clients register over https and serve a real local app: our lt (told the CA by --ca; its pool
connections are upgrades inside the relay's TLS) and the npm client (NODE_EXTRA_CA_CERTS); the
npm client's pool stays raw TCP, as designed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from harness.processes import PYTHON, Process, ProcessGroup
from harness.relay import NO_LIVE_TUNNEL_CAP, NPM_LT, LocalApp, free_port, relay_env
from harness.waiting import IO_TIMEOUT_S, wait_until
from websockets.sync.client import connect as ws_connect

from bench.procs import client_env

from .appdata import GREETING, pattern

START_S = 20.0
DOMAIN = "tls.localhost"
# RELAY_HEADER_TIMEOUT_S's default (relay/protocol.py DEFAULT_HEADER_TIMEOUT_S), and the
# slack a loaded test machine needs on top of it.
HEADER_TIMEOUT_S = 10.0
SLACK_S = 5.0


@dataclass
class Certificate:
    """A CA, and a leaf for DOMAIN and *.DOMAIN written as certbot writes them."""

    ca: trustme.CA
    ca_file: Path
    fullchain: bytes
    privkey: bytes

    def context(self) -> ssl.SSLContext:
        """A visitor's context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def install(self, cert: Path, key: Path) -> None:
        key.write_bytes(self.privkey)
        cert.write_bytes(self.fullchain)


def make_certificate(directory: Path, name: str) -> Certificate:
    ca = trustme.CA()
    leaf = ca.issue_cert(DOMAIN, f"*.{DOMAIN}", "127.0.0.1")
    ca_file = directory / f"{name}-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return Certificate(ca, ca_file, chain, leaf.private_key_pem.bytes())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Certificate, Certificate]:
    directory = tmp_path_factory.mktemp("tls")
    return make_certificate(directory, "first"), make_certificate(directory, "second")


class HTTPSTo(http.client.HTTPSConnection):
    """An https connection to 127.0.0.1:port that names `server_name` (SNI, the Host header
    and the name the certificate must carry): `<name>.DOMAIN` resolves nowhere here."""

    def __init__(self, port: int, server_name: str, context: ssl.SSLContext) -> None:
        super().__init__(server_name, port, context=context, timeout=IO_TIMEOUT_S)
        self.context = context

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self.context.wrap_socket(sock, server_hostname=self.host)


def fetch(conn: http.client.HTTPConnection, target: str) -> tuple[int, dict[str, str], bytes]:
    conn.request("GET", target)
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def https_get(
    port: int, target: str, context: ssl.SSLContext, name: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = HTTPSTo(port, f"{name}.{DOMAIN}" if name else DOMAIN, context)
    try:
        return fetch(conn, target)
    finally:
        conn.close()


def tls_relay(
    group: ProcessGroup, db: Path, cert: Path, key: Path, domain: str = DOMAIN, **env: str
) -> tuple[Process, int]:
    """`runrelay` on the defaults but for its certificate; the process and its https port."""
    environ = relay_env(db, RELAY_TLS_CERT=str(cert), RELAY_TLS_KEY=str(key), **env)
    args = ["--port", "0", "--bind", "127.0.0.1", "--domain", domain]
    process = group.start([PYTHON, "manage.py", "runrelay", *args], environ, name="relay")
    match = process.wait_for_line(r"tunnelsite relay listening on https://127\.0\.0\.1:(\d+)")
    return process, int(match.group(1))


def start_our_lt(
    group: ProcessGroup, port: int, app: LocalApp, ca: Path, config: Path
) -> tuple[Process, str, str]:
    environ = client_env()
    environ.update(LT_CONFIG_DIR=str(config), PYTHONUNBUFFERED="1")
    args = [PYTHON, "-m", "tunnelsite_client.cli", "--port", str(app.port), "--ca", str(ca)]
    process = group.start([*args, "--host", f"https://127.0.0.1:{port}"], environ, name="our lt")
    url = process.wait_for_line(r"your url is: (\S+)").group(1)
    return process, url, re.match(r"https://([^.]+)\.", url).group(1)  # type: ignore[union-attr]


def tunnel_sockets(port: int, name: str, context: ssl.SSLContext) -> int:
    status, _, body = https_get(port, f"/api/tunnels/{name}/status", context)
    return json.loads(body)["connected_sockets"] if status == 200 else -1


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory: pytest.TempPathFactory, relay_template_db: Path) -> Path:
    return tmp_path_factory.mktemp("tls-relays")


def fresh_db(template: Path, directory: Path) -> Path:
    path = directory / f"relay-{time.monotonic_ns()}.sqlite3"
    path.write_bytes(template.read_bytes())
    return path


@pytest.fixture(scope="module")
def relay_https(
    module_group: ProcessGroup,
    certs: tuple[Certificate, Certificate],
    relay_template_db: Path,
    db_dir: Path,
) -> tuple[Process, int]:
    """One https relay for the tests that do not change its certificate. The npm clients all
    register from 127.0.0.1: no cap on live tunnels per address (NO_LIVE_TUNNEL_CAP)."""
    first, _ = certs
    cert, key = db_dir / "fullchain.pem", db_dir / "privkey.pem"
    first.install(cert, key)
    db = fresh_db(relay_template_db, db_dir)
    return tls_relay(module_group, db, cert, key, **NO_LIVE_TUNNEL_CAP)


# --- the site over https ------------------------------------------------------------------------
def test_healthz_answers_over_https_with_a_verified_certificate(relay_https, certs):
    _, port = relay_https
    status, _, body = https_get(port, "/healthz", certs[0].context())
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_a_visitor_who_does_not_trust_the_ca_is_refused_the_handshake(relay_https):
    _, port = relay_https
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(port, "/healthz", ssl.create_default_context())


def test_plain_http_on_the_https_port_gets_no_page(relay_https):
    _, port = relay_https
    with socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n".encode())
        assert b"200 OK" not in sock.recv(4096)


def test_only_tls_1_2_and_up_and_alpn_http_1_1(relay_https, certs):
    _, port = relay_https
    old = certs[0].context()
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is what is tested
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        https_get(port, "/healthz", old)
    context = certs[0].context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"
            assert sock.version() in {"TLSv1.2", "TLSv1.3"}


def test_the_admin_login_page_and_its_css_over_https(relay_https, certs):
    _, port = relay_https
    context = certs[0].context()
    status, headers, body = https_get(port, "/admin/login/", context)
    assert status == 200
    # With a certificate the cookies are Secure and __Host- (RELAY_PUBLIC_SCHEME is https).
    assert headers["set-cookie"].startswith("__Host-csrftoken=")
    assert "Secure" in headers["set-cookie"]
    css = re.findall(rb'href="(/static/[^"]+\.css)"', body)
    assert css, body[:500]
    status, headers, _ = https_get(port, css[0].decode(), context)
    assert status == 200
    assert headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("way", ["flags", "env"])
def test_the_flags_turn_on_https_as_the_variables_do(way, certs, relay_template_db, tmp_path):
    """--tls-cert/--tls-key give what RELAY_TLS_CERT/RELAY_TLS_KEY give: https URLs for
    tunnels, Secure __Host- cookies, and the admin's https origin trusted for its forms."""
    first = certs[0]
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    first.install(cert, key)
    db = fresh_db(relay_template_db, tmp_path)
    args = ["--port", "0", "--bind", "127.0.0.1", "--domain", DOMAIN]
    env = {}
    if way == "flags":
        args += ["--tls-cert", str(cert), "--tls-key", str(key)]
    else:
        env = {"RELAY_TLS_CERT": str(cert), "RELAY_TLS_KEY": str(key)}
    group = ProcessGroup()
    try:
        process = group.start(
            [PYTHON, "manage.py", "runrelay", *args], relay_env(db, **env), name="relay"
        )
        port = int(process.wait_for_line(r"listening on https://127\.0\.0\.1:(\d+)").group(1))
        process.wait_for_line(rf"tunnels are served at https://<name>\.{DOMAIN}:{port}$")
        context = first.context()
        status, _, body = https_get(port, "/?new", context)
        assert status == 200, body
        assert json.loads(body)["url"].startswith("https://")
        conn = HTTPSTo(port, DOMAIN, context)
        try:
            status, headers, body = fetch(conn, "/admin/login/")
            assert status == 200
            cookie = headers["set-cookie"].split(";", 1)[0]
            assert cookie.startswith("__Host-csrftoken=") and "Secure" in headers["set-cookie"]
            token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
            assert token is not None
            form = f"csrfmiddlewaretoken={token.group(1).decode()}&username=nobody&password=x"
            conn.request(
                "POST",
                "/admin/login/",
                body=form,
                headers={
                    "Cookie": cookie,
                    "Origin": f"https://{DOMAIN}:{port}",
                    "Referer": f"https://{DOMAIN}:{port}/admin/login/",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
            response = conn.getresponse()
            page = response.read()
            # The CSRF check passed (a 403 otherwise): the form answers the wrong password.
            assert response.status == 200, page[:300]
            assert b"Please enter the correct username and password" in page
        finally:
            conn.close()
    finally:
        group.stop_all()


# --- both clients register over https ------------------------------------------------------
def test_our_lt_registers_over_https_and_serves_a_visitor(
    relay_https, certs, local_app, group, tmp_path
):
    relay, port = relay_https
    first = certs[0]
    _, url, name = start_our_lt(group, port, local_app, first.ca_file, tmp_path)
    assert url == f"https://{name}.{DOMAIN}:{port}"
    # No raw pool port: its pool connections are upgrades on this https port.
    relay.wait_for_line(rf"tunnel {name} opened for \S+ \(upgraded pool connections\)")
    context = first.context()
    wait_until(lambda: tunnel_sockets(port, name, context) > 0, IO_TIMEOUT_S, "a pool socket")
    status, _, body = https_get(port, "/hello", context, name)
    assert (status, body) == (200, GREETING)
    # The app is told its visitors came over https (RELAY_PUBLIC_SCHEME follows the cert).
    status, _, body = https_get(port, "/headers", context, name)
    headers = {key.lower(): value for key, value in json.loads(body)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    # A large body and a WebSocket (wss) cross the relay's TLS whole.
    size = 5 << 20
    status, _, body = https_get(port, f"/bytes/{size}", context, name)
    assert status == 200 and len(body) == size
    assert body == pattern(size)
    upload = os.urandom(3 << 20)
    conn = HTTPSTo(port, f"{name}.{DOMAIN}", context)
    try:
        conn.request("POST", "/sha256", body=upload)
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert answer == {"sha256": hashlib.sha256(upload).hexdigest(), "length": len(upload)}
    sock = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S)
    uri = f"wss://{name}.{DOMAIN}:{port}/ws"
    with ws_connect(uri, sock=sock, ssl=context, open_timeout=IO_TIMEOUT_S) as ws:
        ws.send("over tls")
        assert ws.recv(timeout=IO_TIMEOUT_S) == "over tls"
        ws.send(b"\x00" * 100_000)
        assert ws.recv(timeout=IO_TIMEOUT_S) == b"\x00" * 100_000


def test_the_npm_client_registers_over_https_and_serves_a_visitor(
    relay_https, certs, local_app, group
):
    if not NPM_LT.exists():
        pytest.fail("the npm client is not installed; run `make test` once")
    _, port = relay_https
    first = certs[0]
    environ = {**os.environ, "NODE_EXTRA_CA_CERTS": str(first.ca_file)}
    args = [str(NPM_LT), "--port", str(local_app.port), "--host", f"https://127.0.0.1:{port}"]
    process = group.start(args, environ, name="npm lt")
    url = process.wait_for_line(r"your url is: (\S+)").group(1)
    name = re.match(r"https://([^.]+)\.tls\.localhost:", url).group(1)  # type: ignore[union-attr]
    context = first.context()
    wait_until(lambda: tunnel_sockets(port, name, context) > 0, IO_TIMEOUT_S, "a pool socket")
    status, _, body = https_get(port, "/hello", context, name)
    assert (status, body) == (200, GREETING)


# --- SIGHUP reloads the certificate --------------------------------------------------------
def test_sighup_serves_a_new_certificate_to_new_connections_only(
    certs, local_app, relay_template_db, tmp_path
):
    first, second = certs
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    first.install(cert, key)
    group = ProcessGroup()
    try:
        relay, port = tls_relay(group, fresh_db(relay_template_db, tmp_path), cert, key)
        lt, _, name = start_our_lt(group, port, local_app, first.ca_file, tmp_path)
        old_context = first.context()
        wait_until(lambda: tunnel_sockets(port, name, old_context) > 0, IO_TIMEOUT_S, "a pool")
        kept = HTTPSTo(port, f"{name}.{DOMAIN}", old_context)
        assert fetch(kept, "/hello")[::2] == (200, GREETING)
        kept_socket = kept.sock
        raw = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S)
        uri = f"wss://{name}.{DOMAIN}:{port}/ws"
        ws = ws_connect(uri, sock=raw, ssl=old_context, open_timeout=IO_TIMEOUT_S)
        ws.send("before")
        assert ws.recv(timeout=IO_TIMEOUT_S) == "before"

        second.install(cert, key)  # certbot renewed: a new chain (here even a new CA)
        relay.signal(signal.SIGHUP)
        line = relay.wait_for_line(r"reloaded the TLS certificate: .*valid until").group(0)
        assert f"*.{DOMAIN}" in line

        # The visitor's keep-alive connection, opened before, still works on the old one.
        assert fetch(kept, "/hello")[::2] == (200, GREETING)
        assert kept.sock is kept_socket
        kept.close()
        # So does a WebSocket opened before.
        ws.send("after")
        assert ws.recv(timeout=IO_TIMEOUT_S) == "after"
        ws.close()
        # A new connection sees the new certificate: the old CA no longer verifies it.
        with pytest.raises(ssl.SSLCertVerificationError):
            https_get(port, "/healthz", first.context())
        # The live tunnel keeps serving, over new connections with the new certificate.
        assert https_get(port, "/hello", second.context(), name)[::2] == (200, GREETING)
        assert lt.proc.poll() is None

        # A broken file: the relay says why and keeps serving the certificate it has.
        cert.write_text("not a certificate\n")
        relay.signal(signal.SIGHUP)
        line = relay.wait_for_line(r"kept the TLS certificate in use: .*").group(0)
        assert str(cert) in line and "no PEM certificate" in line
        assert https_get(port, "/hello", second.context(), name)[::2] == (200, GREETING)
        assert relay.proc.poll() is None
    finally:
        group.stop_all()


# --- the redirect port ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def redirecting(
    module_group: ProcessGroup,
    certs: tuple[Certificate, Certificate],
    relay_template_db: Path,
    db_dir: Path,
) -> tuple[int, int]:
    """A relay with RELAY_HTTP_REDIRECT_PORT: (its https port, its redirect port)."""
    cert, key = db_dir / "redirect-fullchain.pem", db_dir / "redirect-privkey.pem"
    certs[0].install(cert, key)
    redirect = free_port()
    db = fresh_db(relay_template_db, db_dir)
    relay, port = tls_relay(module_group, db, cert, key, RELAY_HTTP_REDIRECT_PORT=str(redirect))
    relay.wait_for_line(rf"http://127\.0\.0\.1:{redirect} redirects to https")
    return port, redirect


def plain(port: int, data: bytes) -> tuple[bytes, float]:
    """Send `data` on a plain connection; everything until the relay closes, and when."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S) as sock:
        sock.settimeout(HEADER_TIMEOUT_S + SLACK_S)
        sock.sendall(data)
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


@pytest.mark.parametrize("host", [DOMAIN, f"quiet-fox.{DOMAIN}"])
def test_the_redirect_port_answers_308_to_the_same_path_on_https(redirecting, host):
    port, redirect = redirecting
    request = f"GET /some/path?q=1 HTTP/1.1\r\nHost: {host}:{redirect}\r\n\r\n".encode()
    answer, _ = plain(redirect, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n")
    location = f"https://{host}:{port}/some/path?q=1"
    assert f"\r\nLocation: {location}".encode() in head
    assert location in json.loads(body)["message"]


def test_lt_pointed_at_the_redirect_port_stops_and_names_the_https_url(
    group, certs, relay_template_db, db_dir, local_app, tmp_path
):
    """`lt --host http://relay` where the relay only redirects to https: lt follows no
    redirect (its registration may carry a token) and does not retry forever either."""
    authority = certs[0].ca
    leaf = authority.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    redirect = free_port()
    db = fresh_db(relay_template_db, db_dir)
    env = {"RELAY_HTTP_REDIRECT_PORT": str(redirect)}
    _, port = tls_relay(group, db, cert, key, domain="localhost", **env)
    environ = client_env()
    environ.update(LT_CONFIG_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    args = [PYTHON, "-m", "tunnelsite_client.cli", "--port", str(local_app.port)]
    lt = group.start([*args, "--host", f"http://localhost:{redirect}"], environ, name="lt")
    assert lt.wait(timeout=START_S) == 1, lt.output()
    assert f"run lt with --host https://localhost:{port}" in lt.output(), lt.output()
    assert "Traceback" not in lt.output()


def test_lt_speaking_plain_http_to_the_https_port_is_told_to_try_https(
    relay_https, local_app, group, tmp_path
):
    _, port = relay_https
    environ = client_env()
    environ.update(LT_CONFIG_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    args = [PYTHON, "-m", "tunnelsite_client.cli", "--port", str(local_app.port)]
    lt = group.start([*args, "--host", f"http://127.0.0.1:{port}"], environ, name="lt")
    lt.wait_for_line(
        rf"the relay closed the connection without an answer \(if it serves https on that "
        rf"port: --host https://127\.0\.0\.1:{port}\)"
    )
    assert "Traceback" not in lt.output() and "ConnectionClosed" not in lt.output()


def test_the_redirect_port_tells_a_client_that_sent_a_token_in_clear_to_revoke_it(redirecting):
    """The npm client with `--host http://TOKEN@relay`: its Basic credentials crossed the
    network in clear; a 308 would hide it (axios follows without them, and the user hears
    "this relay needs an API token")."""
    port, redirect = redirecting
    request = (
        f"GET /?new HTTP/1.1\r\nHost: {DOMAIN}:{redirect}\r\n"
        "Authorization: Basic bHRfc2VjcmV0Og==\r\nUser-Agent: axios/0.21.4\r\n\r\n"
    ).encode()
    answer, _ = plain(redirect, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    # 203, not 400: the npm client retries any error silently, but prints a 203's message.
    assert head.startswith(b"HTTP/1.1 203 "), head
    assert b"Location" not in head
    message = json.loads(body)["message"]
    assert "crossed the network unencrypted" in message
    assert f"https://{DOMAIN}:{port}" in message


def test_the_redirect_port_never_proxies_and_refuses_foreign_hosts(redirecting):
    _, redirect = redirecting
    for host in ["evil.example", f"evil.example/.{DOMAIN}", f"{DOMAIN}.evil.example"]:
        answer, _ = plain(redirect, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 400 "), (host, answer)
        assert b"Location" not in answer


def test_the_redirect_port_closes_garbage_and_a_slow_head_within_the_deadline(redirecting):
    _, redirect = redirecting
    answer, took = plain(redirect, b"\x16\x03\x01 garbage \x00\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert took < SLACK_S
    answer, took = plain(redirect, b"GET / HTTP/1.1\r\nHost: tls.localhost\r\n")  # no end
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT_S - SLACK_S < took < HEADER_TIMEOUT_S + SLACK_S
    huge = b"GET / HTTP/1.1\r\nHost: tls.localhost\r\nX-Big: " + b"a" * (64 << 10) + b"\r\n\r\n"
    answer, took = plain(redirect, huge)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert took < SLACK_S


REDIRECT_CONNECTIONS_PER_IP = 3  # the setting under test: a few held connections reach it


def redirected(port: int, source: str = "127.0.0.1") -> bytes:
    """One request on a fresh plain connection from `source`: the relay's whole answer."""
    with socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S, (source, 0)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: tls.localhost\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_the_redirect_port_counts_connections_per_address(group, certs, relay_template_db, db_dir):
    """Review finding 7: RELAY_MAX_CONNECTIONS_PER_IP holds on the redirect port too; an
    address at the limit gets a 429, another address does not, and a closed connection gives
    its place back."""
    cert, key = db_dir / "limit-fullchain.pem", db_dir / "limit-privkey.pem"
    certs[0].install(cert, key)
    redirect = free_port()
    db = fresh_db(relay_template_db, db_dir)
    relay, _ = tls_relay(
        group,
        db,
        cert,
        key,
        RELAY_HTTP_REDIRECT_PORT=str(redirect),
        RELAY_MAX_CONNECTIONS_PER_IP=str(REDIRECT_CONNECTIONS_PER_IP),
    )
    relay.wait_for_line(rf"http://127\.0\.0\.1:{redirect} redirects to https")
    held = [
        socket.create_connection(("127.0.0.1", redirect), IO_TIMEOUT_S)
        for _ in range(REDIRECT_CONNECTIONS_PER_IP)
    ]
    try:
        wait_until(
            lambda: redirected(redirect).startswith(b"HTTP/1.1 429 "),
            IO_TIMEOUT_S,
            "the address's next connection refused",
        )
        assert b"open connections" in redirected(redirect)
        assert redirected(redirect, "127.0.0.2").startswith(b"HTTP/1.1 308 ")
    finally:
        held.pop().close()
    try:
        wait_until(
            lambda: redirected(redirect).startswith(b"HTTP/1.1 308 "),
            IO_TIMEOUT_S,
            "the closed connection's place given back",
        )
    finally:
        for sock in held:
            sock.close()


# --- bad files stop the start in one line ------------------------------------------------------
def start_failure(group: ProcessGroup, db: Path, args: list[str], **env: str) -> str:
    process = group.start(
        [PYTHON, "manage.py", "runrelay", "--port", "0", *args], relay_env(db, **env), name="bad"
    )
    try:
        code = process.wait(START_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"runrelay {' '.join(args)} was still running after {START_S:g} s")
    output = process.output()
    assert code != 0, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def bad_start(relay_template_db: Path, tmp_path: Path) -> Iterator[tuple[ProcessGroup, Path]]:
    group = ProcessGroup()
    try:
        yield group, fresh_db(relay_template_db, tmp_path)
    finally:
        group.stop_all()


def test_a_missing_certificate_file_is_one_line_and_a_non_zero_exit(bad_start, certs, tmp_path):
    group, db = bad_start
    key = tmp_path / "privkey.pem"
    key.write_bytes(certs[0].privkey)
    missing = tmp_path / "nowhere.pem"
    line = start_failure(group, db, ["--tls-cert", str(missing), "--tls-key", str(key)])
    assert f"cannot read the TLS certificate {missing}: No such file or directory" in line


def test_a_key_that_does_not_match_is_one_line_and_a_non_zero_exit(bad_start, certs, tmp_path):
    group, db = bad_start
    first, second = certs
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert.write_bytes(first.fullchain)
    key.write_bytes(second.privkey)
    line = start_failure(group, db, ["--tls-cert", str(cert), "--tls-key", str(key)])
    assert f"the TLS key {key} does not belong to the certificate {cert}" in line


def test_a_certificate_without_its_key_is_one_line_and_a_non_zero_exit(bad_start, certs, tmp_path):
    group, db = bad_start
    cert = tmp_path / "fullchain.pem"
    cert.write_bytes(certs[0].fullchain)
    line = start_failure(group, db, ["--tls-cert", str(cert)])
    assert "--tls-cert and --tls-key" in line and "go together" in line
    line = start_failure(group, db, [], RELAY_TLS_CERT=str(cert))
    assert "RELAY_TLS_CERT and RELAY_TLS_KEY go together" in line


def test_a_redirect_port_without_a_certificate_is_refused(bad_start):
    group, db = bad_start
    line = start_failure(group, db, ["--http-redirect-port", str(free_port())])
    assert "--http-redirect-port" in line and "--tls-cert" in line


def test_a_cluster_node_with_a_certificate_is_refused_in_one_line(bad_start, certs, tmp_path):
    """Nodes forward to each other over plain http on the public port: a node on https would
    fail every forward, so it is refused at start rather than half working."""
    group, db = bad_start
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    certs[0].install(cert, key)
    flags = ["--tls-cert", str(cert), "--tls-key", str(key), "--node-name", "n1"]
    line = start_failure(group, db, flags, SECRET_KEY="k" * 50)
    assert "a cluster node cannot hold the certificate yet" in line


def test_a_taken_redirect_port_is_one_line_and_a_non_zero_exit(bad_start, certs, tmp_path):
    group, db = bad_start
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    certs[0].install(cert, key)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        flags = ["--tls-cert", str(cert), "--tls-key", str(key), "--http-redirect-port", str(port)]
        line = start_failure(group, db, flags)
    assert f"cannot listen on 127.0.0.1:{port} (--http-redirect-port" in line
    assert "Address already in use" in line
