"""The real `lt` process against the relay double and a real local app."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trustme
from harness.lt_process import name_of

if TYPE_CHECKING:
    from harness.relay_double import RelayDouble


def test_it_prints_the_url_and_proxies_get_and_a_large_post(relay: RelayDouble, app, run_lt):
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    url = lt.url()
    name = name_of(url)
    assert url == f"http://{name}.localhost:{relay.port}"
    relay.wait_for_sockets(name)
    assert relay.registrations[0].headers["user-agent"].startswith("tunnelsite-lt/")

    answer = relay.request(name, "GET", "/hello?x=1")
    assert answer.status == 200
    info = answer.json()
    assert (info["method"], info["path"]) == ("GET", "/hello?x=1")
    assert info["host"] == f"{name}.localhost:{relay.port}"

    body = os.urandom(3 * 1024 * 1024 + 17)
    answer = relay.request(name, "POST", "/upload", body=body)
    assert answer.status == 200
    assert answer.json()["sha256"] == hashlib.sha256(body).hexdigest()

    answer = relay.request(name, "GET", "/big?n=5000000")
    assert answer.status == 200
    assert len(answer.body) == 5_000_000
    assert answer.body[:16] == b"0123456789abcdef"


def test_it_rewrites_the_host_of_each_keep_alive_request_and_never_a_body(
    relay: RelayDouble, app, run_lt
):
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--local-host", "localhost")
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    tricky = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3
    answers, carried = relay.requests_on_one_socket(
        name, [("GET", "/one", b""), ("POST", "/two", tricky), ("GET", "/three", b"")]
    )
    assert carried == 3
    assert [a.status for a in answers] == [200, 200, 200]
    assert [a.json()["host"] for a in answers] == ["localhost"] * 3
    assert [a.json()["path"] for a in answers] == ["/one", "/two", "/three"]
    assert answers[1].json()["sha256"] == hashlib.sha256(tricky).hexdigest()
    assert answers[1].json()["body_start"].startswith("GET / HTTP/1.1\r\nHost: x\r\n")


def test_it_answers_502_while_the_local_app_is_down_and_200_once_it_is_up(
    relay: RelayDouble, run_lt, local_app_class
):
    # A bound socket that does not listen: the port is refused, and no other socket
    # (such as one of the client's own outgoing ones) can take it meanwhile.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        lt = run_lt("--port", str(port), "--host", relay.url)
        name = name_of(lt.url())
        relay.wait_for_sockets(name)

        answer = relay.request(name, "POST", "/form", body=b"a=1" * 1000)
        assert answer.status == 502
        assert answer.headers["x-tunnelsite-client-error"] == "local-app-unreachable"
        assert f"localhost:{port}" in answer.body.decode()
        lt.wait_for_line(r"local app at http://localhost:\d+ unreachable")

    up = local_app_class(port=port).start()
    try:
        answer = relay.request(name, "GET", "/again")
        assert answer.status == 200
        assert answer.json()["path"] == "/again"
    finally:
        up.stop()
    assert lt.proc.poll() is None


def test_it_passes_chunked_answers_and_head_requests_through(relay: RelayDouble, app, run_lt):
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    answers, carried = relay.requests_on_one_socket(
        name, [("GET", "/chunked", b""), ("HEAD", "/big?n=100", b""), ("GET", "/x", b"")]
    )
    assert answers[0].body == b"hello chunked world"
    assert answers[1].status == 200 and answers[1].body == b""
    assert answers[1].headers["content-length"] == "100"
    assert answers[2].json()["path"] == "/x"
    assert carried == 3


def test_it_prints_one_line_per_request_with_print_requests(relay: RelayDouble, app, run_lt):
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--print-requests")
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    relay.request(name, "GET", "/logged?q=1")
    lt.wait_for_line(r"^\d\d:\d\d:\d\d GET /logged\?q=1 200 \d+ ms$")


@pytest.mark.parametrize(("status", "code"), [(401, 3), (403, 4), (409, 5), (429, 6), (400, 1)])
def test_a_refused_registration_ends_with_the_message_and_its_exit_code(
    relay: RelayDouble, run_lt, status: int, code: int
):
    relay.forced.append((status, f"refused with {status} for a reason"))
    lt = run_lt("--port", "3000", "--host", relay.url)
    assert lt.wait() == code
    assert any(f"refused with {status} for a reason" in line for line in lt.errors)
    assert not any("Traceback" in line for line in lt.errors)


def test_it_sends_the_token_and_works_with_a_relay_that_requires_one(
    relay: RelayDouble, app, run_lt
):
    relay.required_token = "lt_secret"
    refused = run_lt("--port", str(app.port), "--host", relay.url)
    assert refused.wait() == 3
    lt = run_lt("--port", str(app.port), "--host", relay.url, env={"LT_TOKEN": "lt_secret"})
    name = name_of(lt.url())
    assert relay.registrations[-1].headers["authorization"] == "Bearer lt_secret"
    relay.wait_for_sockets(name)
    assert relay.request(name, "GET", "/").status == 200


def test_every_flag_can_come_from_the_environment(relay: RelayDouble, app, run_lt):
    env = {"PORT": str(app.port), "HOST": relay.url, "SUBDOMAIN": "from-env-name"}
    lt = run_lt(env=env)
    assert lt.url() == f"http://from-env-name.localhost:{relay.port}"
    relay.wait_for_sockets("from-env-name")
    assert relay.request("from-env-name", "GET", "/").status == 200


def test_a_saved_login_gives_the_host_and_token(relay: RelayDouble, app, run_lt):
    relay.required_token = "lt_saved"
    login = run_lt("login", "--host", relay.url, "--token", "lt_saved")
    assert login.wait() == 0
    lt = run_lt("--port", str(app.port))
    name = name_of(lt.url())
    assert relay.registrations[-1].headers["authorization"] == "Bearer lt_saved"
    relay.wait_for_sockets(name)
    assert run_lt("logout").wait() == 0
    assert run_lt("--port", str(app.port), "--host", relay.url).wait() == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_closes_the_tunnel_and_releases_the_name(
    relay: RelayDouble, app, run_lt, signum: int
):
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--token", "lt_tok")
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    lt.proc.send_signal(signum)
    assert lt.wait() == 0
    assert [(d.method, d.path) for d in relay.deletes] == [("DELETE", f"/api/tunnels/{name}")]
    assert relay.deletes[0].headers["authorization"] == "Bearer lt_tok"
    assert name not in relay.tunnels
    assert not any("Traceback" in line for line in lt.errors)


def test_it_registers_the_same_name_again_after_the_relay_restarts(relay: RelayDouble, app, run_lt):
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    url = lt.url()
    name = name_of(url)
    relay.wait_for_sockets(name)
    relay.stop()
    mark = len(lt.lines)
    lt.wait_for_line(r"lost the relay", after=mark)
    relay.start(port=relay.port)
    lt.wait_for_line(rf"registered again as {url}$", after=mark, timeout=15)
    assert relay.registrations[-1].path == f"/{name}"
    relay.wait_for_sockets(name)
    assert relay.request(name, "GET", "/after").json()["path"] == "/after"
    assert lt.proc.poll() is None
    assert not any("Traceback" in line for line in lt.errors)


def test_it_reopens_pool_sockets_the_relay_closes(relay: RelayDouble, app, run_lt):
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    name = name_of(lt.url())
    relay.wait_for_sockets(name)

    async def close_two() -> None:
        tunnel = relay.tunnel(name)
        for sock in list(tunnel.idle)[:2]:
            sock.writer.close()

    relay.call(close_two())
    relay.wait_for_sockets(name)
    assert relay.request(name, "GET", "/").status == 200


def test_websocket_upgrades_pass_through_and_the_socket_is_not_reused(
    relay: RelayDouble, ws_app: int, run_lt
):
    lt = run_lt("--port", str(ws_app), "--host", relay.url)
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    echoes, closed = relay.websocket_echo(name, ["hello", "x" * 100_000, "bye"])
    assert echoes == ["hello", "x" * 100_000, "bye"]
    assert closed
    relay.wait_for_sockets(name)  # the client opened a fresh socket in its place


def test_it_proxies_to_a_local_https_app(relay: RelayDouble, run_lt, tmp_path, local_app_class):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    app = local_app_class(ssl_context=server_context).start()
    try:
        port = str(app.port)
        trusted = run_lt(
            "--port", port, "--host", relay.url, "--local-https", "--local-ca", str(ca_file)
        )
        name = name_of(trusted.url())
        relay.wait_for_sockets(name)
        assert relay.request(name, "GET", "/tls").json()["path"] == "/tls"

        untrusted = run_lt("--port", port, "--host", relay.url, "--local-https")
        name = name_of(untrusted.url())
        relay.wait_for_sockets(name)
        assert relay.request(name, "GET", "/tls").status == 502

        insecure = run_lt(
            "--port", port, "--host", relay.url, "--local-https", "--allow-invalid-cert"
        )
        name = name_of(insecure.url())
        relay.wait_for_sockets(name)
        assert relay.request(name, "GET", "/tls").status == 200
    finally:
        app.stop()


def test_it_retries_a_relay_answering_503_and_then_works(relay: RelayDouble, app, run_lt):
    relay.forced.extend([(503, "starting up"), (503, "starting up")])
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--subdomain", "patient")
    lt.wait_for_line(r"registration failed: starting up; registering again in")
    assert lt.url() == f"http://patient.localhost:{relay.port}"
    assert [r.path for r in relay.registrations] == ["/patient"] * 3
    relay.wait_for_sockets("patient")
    assert relay.request("patient", "GET", "/").status == 200


def test_it_registers_again_instead_of_spinning_when_the_relay_drops_every_socket(
    relay: RelayDouble, app, run_lt
):
    relay.close_pool_at_once = True
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    lt.wait_for_line(r"lost the relay \(the relay closed a pool connection at once\)")
    # 3 sockets, each reopened after a growing delay until 3 quick closes in a row.
    assert relay.pool_connections <= 3 * 4
    relay.close_pool_at_once = False
    lt.wait_for_line(r"registered again as", timeout=15)
    name = relay.registrations[-1].path.strip("/")
    relay.wait_for_sockets(name)
    assert relay.request(name, "GET", "/").status == 200


def test_a_name_taken_while_the_relay_was_down_ends_the_client_with_exit_code_5(
    relay: RelayDouble, app, run_lt
):
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--subdomain", "contested")
    lt.url()
    relay.wait_for_sockets("contested")
    relay.stop()
    lt.wait_for_line(r"lost the relay")
    relay.forced.append((409, "contested is taken"))
    relay.start(port=relay.port)
    assert lt.wait(timeout=15) == 5
    assert any("contested is taken" in line for line in lt.errors)


def test_it_keeps_serving_when_the_reader_of_its_output_goes_away(relay: RelayDouble, app, lt_env):
    # `lt --port N | grep -m1 "your url is"`: grep exits after the first line.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunnelsite_client.cli",
            "--port",
            str(app.port),
            "--host",
            relay.url,
            "--print-requests",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=lt_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip().removeprefix("your url is: ")
        proc.stdout.close()
        name = name_of(url)
        relay.wait_for_sockets(name)
        assert [relay.request(name, "GET", f"/{i}").status for i in range(3)] == [200] * 3
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
