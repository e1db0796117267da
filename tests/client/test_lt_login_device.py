"""`lt login --host URL` without a token (tunnelsite_client/device_login.py against
tunnels/device.py):
the real `lt` process against a real relay. The approval here is the relay's own decision
function run by `manage.py shell` (tests/browser/test_device_login_in_chromium.py approves
in Chromium); what is under test is lt: what it prints, the browser it opens, its polling,
its exit codes and the login it saves."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from harness.lt_process import LtProcess, name_of
from harness.relay import Relay, manage
from harness.relay_double import RelayDouble
from harness.waiting import wait_until

from tunnelsite_client import __version__
from tunnelsite_client.cli import (
    EXIT_DENIED,
    EXIT_EXPIRED,
    EXIT_INTERRUPTED,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
)
from tunnelsite_client.connect import RelayConnector
from tunnelsite_client.device_login import DeviceCode, DeviceLoginError, Granted, poll_token
from tunnelsite_client.limits import DEVICE_SLOW_DOWN_STEP_S

CODE_LINE = r"open (\S+) and enter the code: ([A-Z]{4}-[A-Z]{4})$"

_USER = """
from django.contrib.auth.models import User
User.objects.create_user("dev", password="unused")
"""
_DECIDE = """
from django.contrib.auth.models import User
from tunnels import device_codes
row = device_codes.find(device_codes.normalise({code!r}))
print(device_codes.decide(row, User.objects.get(username="dev"), {approve!r}))
"""
_EXPIRE = """
from datetime import timedelta
from django.utils import timezone
from tunnels import device_codes
from tunnels.models import DeviceAuthorization
row = device_codes.find(device_codes.normalise({code!r}))
DeviceAuthorization.objects.filter(pk=row.pk).update(expires=timezone.now() - timedelta(seconds=1))
"""
_OWNER_OF = """
from tunnels.models import TunnelSession
row = TunnelSession.objects.filter(subdomain={name!r}).first()
print(row.owner.username if row and row.owner else "-")
"""
_TOKENS = """
from tunnels.models import ApiToken
print([(t.user.username, t.name) for t in ApiToken.objects.all()])
"""


@pytest.fixture(scope="module")
def real_relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    """One relay for the module: each test asks for its own device code, and only the
    approved one makes a token (its check reads the token list, so no other test may)."""
    relay = module_relay_factory()
    manage(relay, "shell", "-c", _USER)
    return relay


@pytest.fixture
def browser_log(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A BROWSER that records the URL it is asked to open (Python's webbrowser runs it)."""
    log = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {log}\n')
    script.chmod(0o755)
    return {"BROWSER": str(script)}, log


def host_of(relay: Relay) -> str:
    return f"http://127.0.0.1:{relay.port}"


def decide(relay: Relay, code: str, approve: bool) -> None:
    assert (
        manage(relay, "shell", "-c", _DECIDE.format(code=code, approve=approve)).strip()[-4:]
        == "True"
    )


def saved(lt_env: dict[str, str]) -> Path:
    return Path(lt_env["LT_CONFIG_DIR"]) / "login.json"


def test_an_approved_login_is_saved_and_opens_tunnels_as_the_approver(
    real_relay: Relay, run_lt, app, lt_env, browser_log
) -> None:
    env, log = browser_log
    lt: LtProcess = run_lt("login", "--host", host_of(real_relay), env=env)
    match = lt.wait_for_line(CODE_LINE)
    verify, code = match.group(1), match.group(2)
    assert verify == f"http://localhost:{real_relay.port}/account/device/"
    lt.wait_for_line(r"^Opened your browser")
    assert log.read_text().split() == [f"{verify}?code={code}"]
    decide(real_relay, code, approve=True)
    assert lt.wait() == 0, lt.errors
    name = f"lt on {socket.gethostname()} (lt {__version__})"
    assert f"logged in to {host_of(real_relay)} as token {name}" in lt.lines
    login = json.loads(saved(lt_env).read_text())
    assert login["host"] == host_of(real_relay)
    assert login["token"].startswith("lt_")
    assert login["token"] not in "\n".join(lt.lines + lt.errors)
    assert "lt_" not in "\n".join(lt.lines + lt.errors), "no token, not even its prefix"
    assert manage(real_relay, "shell", "-c", _TOKENS).strip().endswith(f"[('dev', '{name}')]")
    tunnel = run_lt("--port", str(app.port))
    tunnel_name = name_of(tunnel.url())
    wait_until(
        lambda: (
            manage(real_relay, "shell", "-c", _OWNER_OF.format(name=tunnel_name))
            .strip()
            .endswith("dev")
        ),
        message="the tunnel's session to be the approver's",
    )


def test_a_denied_login_exits_10_and_saves_nothing(real_relay: Relay, run_lt, lt_env) -> None:
    lt = run_lt("login", "--host", host_of(real_relay), "--no-browser")
    decide(real_relay, lt.wait_for_line(CODE_LINE).group(2), approve=False)
    assert lt.wait() == EXIT_DENIED
    # The relay's message, once: not lt's paraphrase with the relay's in brackets after it.
    denied = [line for line in lt.errors if "denied" in line.lower()]
    assert denied == ["lt login: The sign-in was denied on the account page."], lt.errors
    assert not saved(lt_env).exists()


def test_an_expired_code_exits_11_and_saves_nothing(real_relay: Relay, run_lt, lt_env) -> None:
    lt = run_lt("login", "--host", host_of(real_relay), "--no-browser")
    code = lt.wait_for_line(CODE_LINE).group(2)
    manage(real_relay, "shell", "-c", _EXPIRE.format(code=code))
    assert lt.wait() == EXIT_EXPIRED
    assert any("expired" in line for line in lt.errors), lt.errors
    assert not saved(lt_env).exists()


def test_no_browser_only_prints(real_relay: Relay, run_lt, browser_log) -> None:
    env, log = browser_log
    lt = run_lt("login", "--host", host_of(real_relay), "--no-browser", env=env)
    code = lt.wait_for_line(CODE_LINE).group(2)
    lt.wait_for_line(r"^Waiting for the approval")
    assert not log.exists(), "the browser was opened"
    assert any(line.endswith(f"?code={code})") for line in lt.lines), lt.lines
    decide(real_relay, code, approve=False)
    assert lt.wait() == EXIT_DENIED


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_stops_cleanly_with_130(real_relay: Relay, run_lt, lt_env, inherited) -> None:
    # "ignored": started from a script's background job (SIGINT ignored at exec), as a
    # suite run in the background starts it; Ctrl-C (kill -INT) must stop it all the same.
    lt = run_lt(
        "login",
        "--host",
        host_of(real_relay),
        "--no-browser",
        sigint_ignored=inherited == "ignored",
    )
    lt.wait_for_line(r"^Waiting for the approval")
    lt.proc.send_signal(signal.SIGINT)
    assert lt.wait() == EXIT_INTERRUPTED
    assert "Traceback" not in "\n".join(lt.errors)
    assert lt.errors[-1] == "lt login: stopped; nothing was saved"
    assert not saved(lt_env).exists()


def test_a_relay_without_the_flow_exits_12(relay: RelayDouble, run_lt, lt_env) -> None:
    lt = run_lt("login", "--host", relay.url)
    assert lt.wait() == EXIT_UNSUPPORTED
    assert "does not offer `lt login` in the browser" in "\n".join(lt.errors)
    assert "--token" in "\n".join(lt.errors)
    assert not saved(lt_env).exists()


def test_plain_http_elsewhere_is_refused_before_asking(run_lt, lt_env) -> None:
    lt = run_lt("login", "--host", "http://relay.example")
    assert lt.wait() == EXIT_USAGE
    assert "refusing to send" in "\n".join(lt.errors)
    assert lt.lines == []


def test_polling_obeys_slow_down_and_rides_out_network_errors() -> None:
    """poll_token against a scripted relay on a real socket: a connection cut before any
    answer (a network error: asked again), slow_down (the next poll waits the interval plus
    5 s), then the token."""
    script = ["cut", "slow_down", "token"]
    arrivals: list[float] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrivals.append(asyncio.get_running_loop().time())
        step = script.pop(0)
        if step == "token":
            status, body = "200 OK", {"access_token": "lt_x", "token_type": "Bearer", "name": "n"}
        elif step == "slow_down":
            status, body = "400 Bad Request", {"error": "slow_down", "message": "slower"}
        else:
            writer.close()
            return
        data = json.dumps(body).encode()
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + data)
        await writer.drain()
        writer.close()

    async def go() -> Granted:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        code = DeviceCode("dc", "BCDF-GHJK", "http://x/", "http://x/?code=B", 60, 1)
        async with server:
            return await poll_token(f"http://127.0.0.1:{port}", RelayConnector(), code, "lt-test")

    granted = asyncio.run(asyncio.wait_for(go(), 30))
    assert granted == Granted("lt_x", "n")
    assert len(arrivals) == 3
    assert arrivals[1] - arrivals[0] >= 1 - 0.05  # after a network error: the interval
    assert arrivals[2] - arrivals[1] >= 1 + DEVICE_SLOW_DOWN_STEP_S - 0.05


class _BuggyConnector(RelayConnector):
    """A real connector with a bug planted after the exchange (a stand-in for a mistake in
    lt's own code): it must surface, not be taken for a network error and retried."""

    def proxy_for(self, host: str, tls: bool) -> None:
        raise KeyError("a bug in lt")


def test_polling_retries_a_half_answer_but_not_a_bug_in_lt() -> None:
    """A broken answer (h11's error: the relay cut it short) is asked again; an error of lt's
    own (here a KeyError) ends the login at once instead of being retried until expiry."""
    script = ["half", "token"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        step = script.pop(0) if script else "token"
        if step == "half":
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"acc')
        else:
            data = json.dumps({"access_token": "lt_x", "name": "n"}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
        await writer.drain()
        writer.close()

    async def go(connector: RelayConnector) -> Granted:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        code = DeviceCode("dc", "BCDF-GHJK", "http://x/", "http://x/?code=B", 20, 1)
        async with server:
            return await poll_token(f"http://127.0.0.1:{port}", connector, code, "lt-test")

    assert asyncio.run(asyncio.wait_for(go(RelayConnector()), 30)) == Granted("lt_x", "n")
    assert script == [], "the half answer was asked again"
    with pytest.raises(KeyError, match="a bug in lt"):
        asyncio.run(asyncio.wait_for(go(_BuggyConnector()), 10))


def test_polling_ends_at_the_deadline_when_the_relay_stays_away() -> None:
    """No relay at all (a port nobody listens on) while polling: asked again until
    expires_in passes, then expired."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed at once: connections to it are refused
    code = DeviceCode("dc", "BCDF-GHJK", "http://x/", "http://x/?code=B", 2, 1)

    async def go() -> None:
        await poll_token(f"http://127.0.0.1:{port}", RelayConnector(), code, "lt-test")

    with pytest.raises(DeviceLoginError) as raised:
        asyncio.run(asyncio.wait_for(go(), 30))
    assert raised.value.kind == DeviceLoginError.EXPIRED


def test_an_https_relay_is_verified_with_ca(tls_relay: RelayDouble, ca_file: str, run_lt) -> None:
    """The relay's certificate is checked as for tunnels: refused without its CA (exit 1,
    what to do), trusted with --ca (this double has no device flow: exit 12, so the POST
    crossed TLS and got its answer)."""
    url = f"https://localhost:{tls_relay.port}"
    untrusted = run_lt("login", "--host", url, "--no-browser")
    assert untrusted.wait() == 1
    assert "certificate is not trusted" in "\n".join(untrusted.errors)
    trusted = run_lt("login", "--host", url, "--no-browser", "--ca", ca_file)
    assert trusted.wait() == EXIT_UNSUPPORTED, trusted.errors
