"""`lt` through a real forward proxy (Debian's tinyproxy): HTTPS_PROXY / HTTP_PROXY with
CONNECT, Basic proxy authentication, NO_PROXY, and the proxy's refusals as clear errors.

The relay is the relay double over HTTPS (a trustme CA) for the connector and `lt`'s TLS
through the proxy, and a real relay (runrelay) over plain http for `lt` end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from harness.forward_proxy import Tinyproxy, start_tinyproxy
from harness.lt_process import LtProcess, name_of
from harness.processes import ProcessGroup
from harness.relay import Relay, free_port, issue_token
from harness.relay_double import RelayDouble
from harness.waiting import IO_TIMEOUT_S

from tunnelsite_client.connect import (
    ProxyError,
    RelayConnector,
    bypasses_proxy,
    is_lasting,
    parse_proxy,
)
from tunnelsite_client.limits import PROXY_MAX_HEAD_BYTES
from tunnelsite_client.registration import Registration, RelayUnreachable, register

TOKEN = "lt_k3x9q2abSECRETtokenNEVERprinted"
PROXY_USER = "alice"
PROXY_PASSWORD = "pr0xy-Passw0rd-never-shown"


def relay_url(relay: RelayDouble) -> str:
    return f"https://localhost:{relay.port}"


def enter(relay: RelayDouble, connector: RelayConnector, token: str | None = TOKEN) -> Registration:
    async def go() -> Registration:
        return await register(relay_url(relay), None, token, connector=connector)

    return asyncio.run(go())


class Recorder:
    """A TCP hop in front of the proxy that keeps every byte `lt` sends it and gets back."""

    def __init__(self, proxy: Tinyproxy) -> None:
        self.proxy = proxy
        self.sent = bytearray()
        self.received = bytearray()
        self.handlers: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def finished(self) -> None:
        """Every connection through it closed at both ends."""
        async with asyncio.timeout(IO_TIMEOUT_S):
            await asyncio.gather(*self.handlers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.proxy.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, into: bytearray):
            while data := await src.read(65536):
                into += data
                dst.write(data)
                await dst.drain()
            dst.close()
            with contextlib.suppress(OSError):
                await dst.wait_closed()

        async with asyncio.timeout(IO_TIMEOUT_S):
            await asyncio.gather(
                pump(reader, up_writer, self.sent),
                pump(up_reader, writer, self.received),
                return_exceptions=True,
            )


# -- the connector (tunnelsite_client/connect.py) through tinyproxy -----------------------------


def test_registration_goes_through_connect_and_the_token_only_inside_tls(
    tls_relay: RelayDouble, ca_file: str, group: ProcessGroup, tmp_path: Path
) -> None:
    proxy = start_tinyproxy(group, tmp_path, [tls_relay.port])
    recorder = Recorder(proxy)

    async def go() -> Registration:
        port = await recorder.start()
        connector = RelayConnector.from_environment(
            {"HTTPS_PROXY": f"http://127.0.0.1:{port}"}, ca_file=ca_file
        )
        async with recorder.server:
            registration = await register(relay_url(tls_relay), None, TOKEN, connector=connector)
            await recorder.finished()
            return registration

    registration = asyncio.run(go())
    assert registration.id.startswith("test-")
    assert proxy.connects() == [f"localhost:{tls_relay.port}"]
    assert tls_relay.registrations[0].headers["authorization"] == f"Bearer {TOKEN}"
    # The proxy saw CONNECT and a TLS handshake with the relay's name (SNI), never the token,
    # the request or the answer.
    assert recorder.sent.startswith(f"CONNECT localhost:{tls_relay.port} HTTP/1.1\r\n".encode())
    assert b"localhost" in recorder.sent  # the SNI in the ClientHello
    for clear in (TOKEN.encode(), b"Bearer", b"GET /?new", b"Authorization"):
        assert clear not in recorder.sent
    assert registration.id.encode() not in recorder.received


def test_a_proxy_password_comes_from_the_url_and_a_missing_one_is_a_lasting_407(
    tls_relay: RelayDouble, ca_file: str, group: ProcessGroup, tmp_path: Path
) -> None:
    proxy = start_tinyproxy(group, tmp_path, [tls_relay.port], PROXY_USER, PROXY_PASSWORD)
    with_password = RelayConnector.from_environment({"https_proxy": proxy.url}, ca_file=ca_file)
    assert enter(tls_relay, with_password).id
    without = RelayConnector.from_environment({"HTTPS_PROXY": proxy.bare_url}, ca_file=ca_file)
    with pytest.raises(RelayUnreachable) as refused:
        enter(tls_relay, without)
    cause = refused.value.__cause__
    assert isinstance(cause, ProxyError) and cause.status == 407
    assert is_lasting(cause)
    assert str(refused.value) == (
        f"the proxy at {proxy.bare_url} refused CONNECT localhost:{tls_relay.port}: "
        "407 Proxy Authentication Required"
    )
    assert len(tls_relay.registrations) == 1


def test_a_port_the_proxy_does_not_allow_is_its_403(
    tls_relay: RelayDouble, ca_file: str, group: ProcessGroup, tmp_path: Path
) -> None:
    proxy = start_tinyproxy(group, tmp_path, [443])
    connector = RelayConnector.from_environment({"HTTPS_PROXY": proxy.url}, ca_file=ca_file)
    with pytest.raises(RelayUnreachable, match=r"refused CONNECT localhost:\d+: 403") as refused:
        enter(tls_relay, connector)
    assert is_lasting(refused.value.__cause__)
    assert tls_relay.registrations == []


def test_a_dead_proxy_is_said_as_such_and_worth_retrying(
    tls_relay: RelayDouble, ca_file: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    connector = RelayConnector.from_environment({"HTTPS_PROXY": dead}, ca_file=ca_file)
    with pytest.raises(RelayUnreachable) as refused:
        enter(tls_relay, connector)
    assert str(refused.value) == f"the proxy at {dead} is unreachable: connection refused"
    assert not is_lasting(refused.value.__cause__)


def test_no_proxy_names_hosts_reached_directly(tls_relay: RelayDouble, ca_file: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    environ = {"HTTPS_PROXY": dead, "NO_PROXY": "example.org, localhost"}
    assert enter(tls_relay, RelayConnector.from_environment(environ, ca_file=ca_file)).id
    # An http relay is not sent to HTTPS_PROXY, only to HTTP_PROXY.
    assert RelayConnector.from_environment({"HTTPS_PROXY": dead}).proxy_for("r", False) is None


def test_the_relay_is_verified_by_its_own_name_through_the_proxy(
    tls_relay: RelayDouble, group: ProcessGroup, tmp_path: Path
) -> None:
    proxy = start_tinyproxy(group, tmp_path, [tls_relay.port])
    connector = RelayConnector.from_environment({"HTTPS_PROXY": proxy.url})  # system CAs
    with pytest.raises(RelayUnreachable, match="the relay's certificate is not trusted") as bad:
        enter(tls_relay, connector)
    assert isinstance(bad.value.__cause__, ssl.SSLCertVerificationError)
    assert tls_relay.registrations == []


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypass"),
    [
        ("relay.example", "*", True),
        ("relay.example", "relay.example", True),
        ("tunnels.relay.example", "relay.example", True),
        ("tunnels.relay.example", ".relay.example", True),
        ("RELAY.example", "relay.example:443", True),
        ("notrelay.example", "relay.example", False),
        ("relay.example", "", False),
        ("127.0.0.1", "localhost,127.0.0.1", True),
        ("::1", "[::1]:8080", True),
        ("relay.example", "example.org, other.example", False),
    ],
)
def test_no_proxy_matches_suffixes_and_star(host: str, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(host, no_proxy) is bypass


def test_a_proxy_url_is_http_with_optional_credentials() -> None:
    proxy = parse_proxy("http://alice:p%40ss@proxy.example:3128")
    assert (proxy.host, proxy.port, proxy.shown) == (
        "proxy.example",
        3128,
        "http://proxy.example:3128",
    )
    assert proxy.authorization == "Basic YWxpY2U6cEBzcw=="  # alice:p@ss
    assert PROXY_PASSWORD not in repr(parse_proxy(f"http://a:{PROXY_PASSWORD}@p:1"))
    assert parse_proxy("proxy.example:3128").port == 3128
    with pytest.raises(ValueError, match="not supported"):
        parse_proxy("socks5://proxy.example:1080")


# -- the real lt through tinyproxy ---------------------------------------------------


def test_lt_over_https_through_an_authenticating_proxy_never_prints_its_secrets(
    tls_relay: RelayDouble,
    ca_file: str,
    group: ProcessGroup,
    tmp_path: Path,
    app,
    run_lt: Callable[..., LtProcess],
) -> None:
    proxy = start_tinyproxy(group, tmp_path, [tls_relay.port], PROXY_USER, PROXY_PASSWORD)
    args = ["--port", str(app.port), "--host", relay_url(tls_relay), "--token", TOKEN]
    lt = run_lt(*args, "--ca", ca_file, env={"HTTPS_PROXY": proxy.url})
    name = name_of(lt.url())
    tls_relay.wait_for_sockets(name)
    assert tls_relay.request(name, "GET", "/via-proxy").json()["path"] == "/via-proxy"
    assert f"localhost:{tls_relay.port}" in proxy.connects()
    lt.stop()
    printed = "\n".join(lt.lines + lt.errors)
    assert PROXY_PASSWORD not in printed and TOKEN not in printed


def test_lt_stops_with_the_proxys_refusal_and_masks_its_password(
    tls_relay: RelayDouble,
    ca_file: str,
    group: ProcessGroup,
    tmp_path: Path,
    app,
    run_lt: Callable[..., LtProcess],
) -> None:
    proxy = start_tinyproxy(group, tmp_path, [tls_relay.port], PROXY_USER, PROXY_PASSWORD)
    wrong = f"http://{PROXY_USER}:{PROXY_PASSWORD}-wrong@127.0.0.1:{proxy.port}"
    args = ["--port", str(app.port), "--host", relay_url(tls_relay), "--ca", ca_file]
    lt = run_lt(*args, env={"HTTPS_PROXY": wrong})
    assert lt.wait() == 1
    message = "\n".join(lt.errors)
    # tinyproxy answers a wrong password with 401 (a missing one with 407).
    assert (
        f"lt: cannot reach the relay: the proxy at {proxy.bare_url} refused CONNECT "
        f"localhost:{tls_relay.port}: 401 Unauthorized"
    ) in message, message
    assert PROXY_PASSWORD not in "\n".join(lt.lines + lt.errors)


def test_lt_to_a_real_relay_over_plain_http_through_http_proxy(
    relay_factory: Callable[..., Relay],
    group: ProcessGroup,
    tmp_path: Path,
    app,
    run_lt: Callable[..., LtProcess],
) -> None:
    relay = relay_factory()
    proxy = start_tinyproxy(group, tmp_path, [relay.port])
    # HTTPS_PROXY is for https relays only: set too, dead, it must not be used.
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": dead}
    lt = run_lt("--port", str(app.port), "--host", f"http://localhost:{relay.port}", env=env)
    name = name_of(lt.url())
    relay.wait_for_sockets(name, relay_max_sockets(relay))
    answer = relay.get("/through-http-proxy", name=name)
    assert answer.status == 200
    assert answer.json()["path"] == "/through-http-proxy"
    assert proxy.connects()[0] == f"localhost:{relay.port}"


def relay_max_sockets(relay: Relay) -> int:
    return int(relay.env.get("RELAY_MAX_SOCKETS", "10"))


# -- a proxy that misbehaves: every wait has a deadline, every read a bound -------------


async def misbehaving_proxy(
    answer: bytes, handlers: list[asyncio.Task[None]]
) -> tuple[asyncio.Server, int]:
    """A listener that reads the CONNECT request and answers `answer` (b"": nothing)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        with contextlib.suppress(OSError):
            await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


def through_misbehaving(answer: bytes) -> ProxyError:
    async def go() -> ProxyError:
        handlers: list[asyncio.Task[None]] = []
        server, port = await misbehaving_proxy(answer, handlers)
        connector = RelayConnector.from_environment({"HTTPS_PROXY": f"http://127.0.0.1:{port}"})
        async with server:
            try:
                await connector.open("relay.example", 443, tls=True)
            except ProxyError as exc:
                async with asyncio.timeout(IO_TIMEOUT_S):  # the client closed: so does it
                    await asyncio.gather(*handlers)
                return exc
        raise AssertionError("the connection went through")

    return asyncio.run(go())


def test_a_proxy_that_never_answers_connect_is_given_up_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tunnelsite_client.connect.PROXY_CONNECT_TIMEOUT_S", 0.3)
    error = through_misbehaving(b"")
    assert "did not answer CONNECT relay.example:443 in time" in error.message
    assert not is_lasting(error)


def test_a_proxy_answer_head_is_bounded() -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * PROXY_MAX_HEAD_BYTES + b"\r\n\r\n"
    error = through_misbehaving(huge)
    assert f"with a head over {PROXY_MAX_HEAD_BYTES} bytes" in error.message


def test_a_proxy_that_does_not_speak_http_is_a_refusal_quoting_what_it_said() -> None:
    error = through_misbehaving(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    assert error.message.endswith("refused CONNECT relay.example:443: 'SSH-2.0-OpenSSH_9.2'")
    assert not is_lasting(error)


# -- the whole way: lt -> tinyproxy (CONNECT) -> nginx (TLS) -> a real relay ------------

NGINX = "/usr/sbin/nginx"
NGINX_CONF = """
daemon off;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost *.localhost;
        ssl_certificate     {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location / {{
            proxy_pass http://127.0.0.1:{relay_port};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
        }}
    }}
}}
"""


def start_tls_front(
    group: ProcessGroup, workdir: Path, ca: trustme.CA, relay_port: int, port: int
) -> None:
    """nginx on `port` terminating TLS (a trustme certificate for localhost) in front of the
    relay, passing upgrades (our lt's pool connections) as docs/deploy.md's snippet does."""
    directory = workdir / "nginx"
    directory.mkdir()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, relay_port=relay_port))
    process = group.start([NGINX, "-p", str(directory), "-c", str(conf)], name="nginx")
    process.wait_for_line(r"start worker process")


def test_lt_through_a_proxy_to_a_real_relay_behind_tls(
    relay_factory: Callable[..., Relay],
    ca: trustme.CA,
    ca_file: str,
    group: ProcessGroup,
    tmp_path: Path,
    app,
    run_lt: Callable[..., LtProcess],
) -> None:
    # Behind a TLS proxy, as docs/deploy.md says: the URLs handed out (the tunnel's, and the
    # pool URL our lt opens its pool connections at, through the proxy) are https on its port.
    front = free_port()
    relay = relay_factory(RELAY_PUBLIC_SCHEME="https", RELAY_PUBLIC_PORT=str(front))
    token = issue_token(relay, "proxied", "laptop")
    start_tls_front(group, tmp_path, ca, relay.port, front)
    proxy = start_tinyproxy(group, tmp_path, [front], PROXY_USER, PROXY_PASSWORD)
    lt = run_lt(
        *("--port", str(app.port), "--host", f"https://localhost:{front}", "--token", token),
        *("--ca", ca_file),
        env={"HTTPS_PROXY": proxy.url},
    )
    name = name_of(lt.url())
    relay.wait_for_sockets(name, relay_max_sockets(relay))
    answer = relay.get("/behind-tls", name=name)
    assert answer.status == 200 and answer.json()["path"] == "/behind-tls"
    assert f"localhost:{front}" in proxy.connects()
    # Every pool connection went through the proxy and nginx's TLS: none straight to the relay.
    assert proxy.connects().count(f"localhost:{front}") > relay_max_sockets(relay)
    lt.stop()
    printed = "\n".join(lt.lines + lt.errors)
    assert token not in printed and PROXY_PASSWORD not in printed


def test_lt_stopping_during_connect_closes_its_connection_to_the_proxy() -> None:
    """A cancel (lt stopping, a caller's deadline) while the proxy has not answered CONNECT
    closes the connection: the proxy reads its end of file, nothing is left to the collector."""

    async def go() -> bytes:
        asked = asyncio.Event()
        ended: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            asked.set()
            ended.set_result(await reader.read())  # b"" once lt has closed
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connector = RelayConnector.from_environment({"HTTPS_PROXY": f"http://127.0.0.1:{port}"})
        async with server:
            opening = asyncio.create_task(connector.open("relay.example", 443, tls=True))
            async with asyncio.timeout(IO_TIMEOUT_S):
                await asked.wait()
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opening
            async with asyncio.timeout(IO_TIMEOUT_S):  # fails here if lt kept it open
                return await ended

    assert asyncio.run(go()) == b""
