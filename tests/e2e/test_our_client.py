"""End to end with our `lt` (`python -m tunnelsite_client.cli`): visitor -> real relay -> `lt` ->
local app.

Every process is real: the relay (`manage.py runrelay --port 0`), our client, and the local
app (`tests/apps/local_app.py`, also over TLS with trustme certificates). The client reads
its saved login from a fresh directory, so a developer's `lt login` never leaks in.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import trustme
from harness.our_client import OurLt
from harness.processes import PYTHON, ROOT, Process, ProcessGroup
from harness.relay import LOCAL_APP, Relay
from harness.waiting import unique_name, wait_until
from harness.websocket import run_websocket
from websockets.asyncio.client import ClientConnection

from tunnelsite_client import open_tunnel

from .appdata import GREETING, pattern

# How long the client may take to come back after the relay restarts: its backoff cap.
BACKOFF_CAP_S = 30.0
TEN_MIB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def tunnel(relay, local_app, our_launcher) -> OurLt:
    """One of our clients for the module, anonymous (no token), on the shared relay."""
    return our_launcher(relay, local_app.port)


@pytest.fixture
def full_tunnel(tunnel: OurLt, relay: Relay) -> OurLt:
    """The module's tunnel once all 10 pool sockets are back (WebSockets use some up)."""
    relay.wait_for_sockets(tunnel.name, 10)
    return tunnel


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    """Local apps and relays a test starts, stops and starts again itself."""
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


def start_local_app(group: ProcessGroup, port: int = 0, *extra: str) -> tuple[Process, int]:
    process = group.start(
        [PYTHON, str(LOCAL_APP), "--port", str(port), *extra], {**os.environ}, name="local_app"
    )
    match = process.wait_for_line(r"local app listening on https?://127\.0\.0\.1:(\d+)")
    return process, int(match.group(1))


def restart_relay(group: ProcessGroup, old: Relay) -> Relay:
    """A new relay process on the port (and database) of one that was killed."""
    args = [PYTHON, "manage.py", "runrelay", "--port", str(old.port)]
    args += ["--bind", "127.0.0.1", "--domain", old.domain]
    process = group.start(args, old.env, name="relay (restarted)")
    process.wait_for_line(rf"tunnelsite relay listening on http://127\.0\.0\.1:{old.port}\b")
    return Relay(process=process, port=old.port, env=old.env, domain=old.domain)


def status_through(relay: Relay, name: str) -> int:
    """The status of GET /hello through the tunnel; 0 while the relay cannot be reached."""
    try:
        return relay.get("/hello", name=name).status
    except OSError:
        return 0


def manage(relay: Relay, *args: str) -> str:
    """Run a management command on the relay's database; its stdout."""
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


# --- bytes both ways ---------------------------------------------------------------------------
def test_anonymous_get_and_post_reach_the_local_app(full_tunnel: OurLt, relay: Relay):
    assert full_tunnel.url == f"http://{full_tunnel.name}.localhost:{relay.port}"

    got = relay.get("/hello", name=full_tunnel.name)
    posted = relay.request("POST", "/sha256", name=full_tunnel.name, body=b"a small body")

    assert (got.status, got.body) == (200, GREETING)
    assert posted.status == 200
    assert posted.json() == {"sha256": hashlib.sha256(b"a small body").hexdigest(), "length": 12}


def test_a_10_mib_upload_and_a_10_mib_download_arrive_intact(full_tunnel: OurLt, relay: Relay):
    body = os.urandom(TEN_MIB)

    posted = relay.request("POST", "/sha256", name=full_tunnel.name, body=body)
    download = relay.get(f"/bytes/{TEN_MIB}", name=full_tunnel.name)

    assert posted.status == 200
    assert posted.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": TEN_MIB}
    assert download.status == 200 and download.complete
    assert hashlib.sha256(download.body).digest() == hashlib.sha256(pattern(TEN_MIB)).digest()


def test_a_chunked_upload_and_keep_alive_requests_stay_in_step(full_tunnel: OurLt, relay: Relay):
    parts = [os.urandom(size) for size in (1, 1000, 70000, 5)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    whole = b"".join(parts)

    with relay.visitor(full_tunnel.name) as visitor:
        answers = [
            visitor.request("POST", "/sha256", [("Transfer-Encoding", "chunked")], chunked),
            visitor.request("HEAD", "/bytes/1000"),
            visitor.request("GET", "/status/304"),
            visitor.request("GET", "/hello"),
        ]

    assert answers[0].json() == {"sha256": hashlib.sha256(whole).hexdigest(), "length": len(whole)}
    assert (answers[1].status, answers[1].body, answers[1].header("content-length")) == (
        200,
        b"",
        "1000",
    )
    assert (answers[2].status, answers[2].body) == (304, b"")
    assert (answers[3].status, answers[3].body) == (200, GREETING)


def test_websocket_messages_are_echoed(full_tunnel: OurLt, relay: Relay):
    payload = os.urandom(100_000)

    async def session(ws: ClientConnection) -> list[object]:
        await ws.send("héllo, tunnel")
        text = await ws.recv()
        await ws.send(payload)
        return [text, await ws.recv()]

    assert run_websocket(relay, full_tunnel.name, session) == ["héllo, tunnel", payload]
    relay.wait_for_sockets(full_tunnel.name, 10)  # the upgraded socket is replaced
    assert relay.get("/hello", name=full_tunnel.name).status == 200


# --- what reaches the local app ------------------------------------------------------------------
def test_local_host_rewrites_the_host_of_every_keep_alive_request(relay, local_app, our_launcher):
    lt = our_launcher(relay, local_app.port, "--local-host", "localhost")

    with relay.visitor(lt.name) as visitor:
        answers = [visitor.request("GET", f"/headers?n={n}") for n in range(8)]

    seen = [dict(answer.json()["headers"]) for answer in answers]
    assert [headers["host"] for headers in seen] == ["localhost"] * 8
    assert all(headers["x-forwarded-host"] == relay.host(lt.name) for headers in seen)
    assert [answer.json()["target"] for answer in answers] == [f"/headers?n={n}" for n in range(8)]


def test_it_proxies_to_a_local_https_app_with_a_trustme_certificate(
    relay, our_launcher, processes, tmp_path
):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, chain, key = tmp_path / "ca.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())
    _, port = start_local_app(processes, 0, "--tls-cert", str(chain), "--tls-key", str(key))
    lt = our_launcher(relay, port, "--local-https", "--local-ca", str(ca_file))
    body = os.urandom(300_000)

    with relay.visitor(lt.name) as visitor:
        got = visitor.request("GET", "/hello")
        posted = visitor.request("POST", "/sha256", body=body)
        again = visitor.request("GET", "/bytes/70000")

    assert (got.status, got.body) == (200, GREETING)
    assert posted.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
    assert (again.status, again.body) == (200, pattern(70000))


# --- faults -------------------------------------------------------------------------------------
def test_it_answers_502_while_the_local_app_is_down_and_200_once_it_is_back(
    relay, our_launcher, processes
):
    app, port = start_local_app(processes)
    lt = our_launcher(relay, port)
    assert relay.get("/hello", name=lt.name).status == 200  # keep-alive connections now open

    app.stop()
    down = relay.get("/hello", name=lt.name)
    start_local_app(processes, port)
    up = relay.get("/hello", name=lt.name)

    assert down.status == 502
    assert down.header("x-tunnelsite-client-error") == "local-app-unreachable"
    assert b"did not answer" in down.body and b"connection refused" in down.body
    assert (up.status, up.body) == (200, GREETING)
    lt.process.wait_for_line(r"is answering again")


def test_it_comes_back_on_the_same_subdomain_after_the_relay_is_killed_and_restarted(
    relay_factory, local_app, our_launcher, processes
):
    first = relay_factory()
    lt = our_launcher(first, local_app.port)
    assert status_through(first, lt.name) == 200

    first.process.proc.kill()  # SIGKILL: no goodbye to the client
    first.process.wait()
    killed = time.monotonic()
    second = restart_relay(processes, first)
    wait_until(lambda: status_through(second, lt.name) == 200, BACKOFF_CAP_S, "the tunnel back")
    took = time.monotonic() - killed

    print(f"the tunnel served again {took:.2f} s after the relay was killed")
    assert took < BACKOFF_CAP_S
    assert lt.process.proc.poll() is None
    lt.process.wait_for_line(rf"registered again as http://{lt.name}\.localhost:{first.port}")
    assert second.get("/hello", name=lt.name).body == GREETING


def test_ctrl_c_frees_the_subdomain_at_once(relay, local_app, our_launcher):
    name = unique_name("ctrlc")
    lt = our_launcher(relay, local_app.port, "--subdomain", name)
    assert relay.register(name, source="127.0.0.2").status == 409  # in use: kept for its owner

    lt.process.signal(signal.SIGINT)

    assert lt.process.wait() == 0
    assert relay.register(name, source="127.0.0.2").status == 200  # no grace period to wait
    assert re.search(rf"tunnel {name} released", lt.process.output())


# --- tokens -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def token_relay(module_relay_factory) -> tuple[Relay, str]:
    """A relay that refuses anonymous tunnels, and a valid token for it."""
    relay = module_relay_factory(RELAY_ALLOW_ANONYMOUS="false")
    create = "from django.contrib.auth import get_user_model; "
    create += "get_user_model().objects.create_user('alice')"
    manage(relay, "shell", "-c", create)
    token = manage(relay, "createtoken", "alice").strip()
    assert token.startswith("lt_")
    return relay, token


def test_a_wrong_token_exits_3_with_the_relays_message(token_relay, local_app, our_launcher):
    relay, token = token_relay
    wrong = "lt_" + "x" * (len(token) - 3)

    process = our_launcher.start(relay, local_app.port, "--token", wrong)

    assert process.wait(20) == 3
    assert "That API token is not valid" in process.output()


def test_no_token_on_a_relay_that_needs_one_exits_3(token_relay, local_app, our_launcher):
    relay, _ = token_relay

    process = our_launcher.start(relay, local_app.port)

    assert process.wait(20) == 3
    assert "This relay needs an API token" in process.output()


def test_a_valid_token_by_flag_or_by_lt_token_opens_a_working_tunnel(
    token_relay, local_app, our_launcher
):
    relay, token = token_relay

    by_flag = our_launcher(relay, local_app.port, "--token", token)
    by_env = our_launcher(relay, local_app.port, env={"LT_TOKEN": token})

    for lt in (by_flag, by_env):
        answer = relay.get("/hello", name=lt.name)
        assert (answer.status, answer.body) == (200, GREETING)


# --- the library --------------------------------------------------------------------------------
def test_open_tunnel_serves_through_the_real_relay_and_releases_its_name(relay, local_app):
    async def main() -> tuple[str, str, int, bytes]:
        async with open_tunnel(local_app.port, host=f"http://localhost:{relay.port}") as tunnel:
            assert tunnel.registration is not None
            name = tunnel.registration.id
            answer = await asyncio.to_thread(relay.get, "/hello", name=name)
            return name, tunnel.url, answer.status, answer.body

    name, url, status, body = asyncio.run(main())

    assert url == f"http://{name}.localhost:{relay.port}"
    assert (status, body) == (200, GREETING)
    assert relay.sockets(name) is None  # released: the relay no longer knows the name
