"""An operator's lasting refusals end the real `lt` at once with their own exit codes: 8 when
the tunnel was disconnected (its name is refused for a cool-down), 9 when it is suspended;
at the first registration and when the relay drops a running tunnel's pool. A 400 to a
registration that carried visitor rules is a usage error (2). Passwords never show."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING

import pytest
from harness.lt_process import name_of
from harness.terminal import Terminal

from tunnelsite_client.library import open_tunnel
from tunnelsite_client.tunnel import TunnelError

if TYPE_CHECKING:
    from harness.local_apps import ThreadedHttpApp
    from harness.relay_double import RelayDouble

PASSWORD = "hunter2-Secret"
DISCONNECTED = "disconnected by an operator: abuse; the name is refused for 60 s"
SUSPENDED = "this tunnel is suspended by the operator: phishing reports"
REFUSALS = [
    ("disconnected", DISCONNECTED, 8, f"lt: disconnected by the operator: {DISCONNECTED}"),
    ("suspended", SUSPENDED, 9, f"lt: {SUSPENDED}"),
]
# Prompt enough that no backoff is involved: lt's first retry delay is 0.5-1 s, its longest
# 30 s, and the relay's Retry-After below is 60 s.
PROMPT_S = 8.0


def refusal(reason: str, message: str, status: int = 403) -> tuple[int, str, dict[str, str]]:
    return status, message, {"X-Tunnelsite-Refusal": reason, "Retry-After": "60"}


@pytest.mark.parametrize(("reason", "message", "code", "line"), REFUSALS)
def test_a_refusal_at_the_first_registration_ends_lt_with_its_code(
    reason, message, code, line, relay: RelayDouble, app: ThreadedHttpApp, run_lt
):
    relay.forced.append(refusal(reason, message))
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--basic-auth", f"al:{PASSWORD}")
    assert lt.wait() == code
    assert line in lt.errors
    assert len(relay.registrations) == 1  # asked once: no retry loop
    assert PASSWORD not in "\n".join(lt.lines + lt.errors)


@pytest.mark.parametrize("status", [403, 429])
@pytest.mark.parametrize(("reason", "message", "code", "line"), REFUSALS)
def test_a_running_tunnel_whose_pool_the_relay_drops_then_refuses_stops_at_once(
    reason, message, code, line, status, relay: RelayDouble, app: ThreadedHttpApp, run_lt
):
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--private")
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    # What the operator's Disconnect or Suspend does: the pool closes, and the name is
    # refused with the reason (a 429 too is lasting when it carries one).
    relay.forced.append(refusal(reason, message, status))
    dropped = time.monotonic()
    relay.call(relay.tunnel(name).close())
    assert lt.wait(PROMPT_S) == code
    assert time.monotonic() - dropped < PROMPT_S
    assert line in lt.errors
    assert relay.registrations[-1].path == f"/{name}"
    assert relay.registrations[-1].headers["x-tunnelsite-access"] == '{"private":true}'


def test_a_400_to_the_rules_is_a_usage_error_and_without_rules_a_failure(
    relay: RelayDouble, app: ThreadedHttpApp, run_lt
):
    relay.forced.append((400, "cidr_allow: at most 64 networks (plan policy counted)"))
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--cidr-allow", "10.0.0.0/8")
    assert lt.wait() == 2
    assert lt.errors == [
        "lt: the relay refused the visitor rules: cidr_allow: at most 64 networks (plan policy "
        "counted)"
    ]
    relay.forced.append((400, "bad request"))
    plain = run_lt("--port", str(app.port), "--host", relay.url)
    assert plain.wait() == 1
    assert plain.errors == ["lt: the relay refused the tunnel: bad request"]


def test_a_password_the_relay_echoes_is_masked_in_retry_lines_and_errors(
    relay: RelayDouble, app: ThreadedHttpApp, run_lt
):
    echo = f"cannot store alice:{PASSWORD} nor {PASSWORD} right now"
    relay.forced.extend([(503, echo), refusal("suspended", f"suspended: {echo}")])
    lt = run_lt("--port", str(app.port), "--host", relay.url, "--basic-auth", f"alice:{PASSWORD}")
    assert lt.wait() == 9
    shown = "\n".join(lt.lines + lt.errors)
    assert "registration failed: cannot store *** nor *** right now; registering again" in shown
    assert lt.errors == ["lt: suspended: cannot store *** nor *** right now"]
    assert PASSWORD not in shown


def test_the_library_sends_the_rules_and_raises_the_operators_refusal(
    relay: RelayDouble, app: ThreadedHttpApp
):
    async def opened() -> str:
        async with open_tunnel(
            app.port, relay.url, basic_auth=["bob:pw-bob-1"], cidr_deny=["2001:db8::/32"]
        ) as tunnel:
            assert tunnel.url
            return tunnel.status.visitors

    async def refused(host: str = relay.url, **options: object) -> None:
        async with open_tunnel(app.port, host, **options):
            pass

    assert asyncio.run(opened()) == "basic-auth (bob), not from 2001:db8::/32"
    sent = relay.registrations[-1].headers["x-tunnelsite-access"]
    assert sent == '{"basic_auth":["bob:pw-bob-1"],"cidr_deny":["2001:db8::/32"]}'

    relay.forced.append(refusal("suspended", SUSPENDED))
    with pytest.raises(TunnelError) as error:
        asyncio.run(refused(private=True))
    assert (error.value.suspended, error.value.message) == (True, SUSPENDED)

    with pytest.raises(ValueError, match="--cidr-allow: 'nowhere' is not an address"):
        asyncio.run(refused(cidr_allow=["nowhere"]))
    with pytest.raises(ValueError, match="visitor passwords"):
        asyncio.run(refused(host="http://relay.example", basic_auth=["a:pw-1"]))


def test_on_a_terminal_lt_asks_for_the_password_and_shows_the_rules_without_it(
    relay: RelayDouble, app: ThreadedHttpApp, lt_env: dict[str, str]
):
    env = {**lt_env, "TERM": "xterm-256color"}
    args = [
        sys.executable,
        "-m",
        "tunnelsite_client.cli",
        "--port",
        str(app.port),
        "--host",
        relay.url,
    ]
    terminal = Terminal([*args, "--basic-auth", "alice", "--cidr-allow", "::1"], env)
    try:
        terminal.wait_for(r"password for visitors' user 'alice': ")
        os.write(terminal.master, f"{PASSWORD}\n".encode())
        name = terminal.wait_for(r"your url is: http://([a-z0-9-]+)\.")[1]
        relay.wait_for_sockets(name)
        terminal.wait_for(r"Visitors\s+basic-auth \(alice\), from ::1/128")
        terminal.wait_for(r"State\s+online")
    finally:
        terminal.stop()
    sent = relay.registrations[0].headers["x-tunnelsite-access"]
    assert sent == f'{{"basic_auth":["alice:{PASSWORD}"],"cidr_allow":["::1/128"]}}'
    assert PASSWORD not in terminal.text()  # getpass does not echo it, nor does lt print it
