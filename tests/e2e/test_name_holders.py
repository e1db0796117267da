"""Who holds a name (issue 10 items 5 and 6), with real processes: the relay, our `lt`, the
npm client, the library's `open_tunnel`, and two local apps that answer differently.

Rule: a name whose client is still connected is refused to a second client with 409 (saying
from where and since when), even for the same owner, unless the new client asks to take it
over (`lt --takeover`): then the old client is disconnected, and our lt exits with code 7
instead of registering again. Names of the relay's own routes are refused to both clients.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.processes import PYTHON, Process, ProcessGroup
from harness.relay import NPM_LT, Relay, issue_token
from harness.waiting import unique_name

from bench.procs import client_env
from tunnelsite_client import TunnelError, open_tunnel

EXIT_TIMEOUT_S = 20.0  # a refused or replaced client must be gone well before this
EXIT_FORBIDDEN = 4
EXIT_TAKEN = 5
EXIT_TAKEN_OVER = 7


@dataclass
class App:
    port: int
    body: str


class Procs:
    """Local apps (`python -m http.server` serving one file each) and both clients."""

    def __init__(self, group: ProcessGroup, tmp: Path) -> None:
        self.group = group
        self.tmp = tmp

    def app(self, body: str) -> App:
        root = self.tmp / body
        root.mkdir()
        (root / "index.html").write_text(body)
        process = self.group.start(
            [PYTHON, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
            {**client_env(), "PYTHONUNBUFFERED": "1"},
            name=f"app {body}",
        )
        port = int(process.wait_for_line(r"Serving HTTP on \S+ port (\d+)").group(1))
        return App(port, body)

    def start(self, kind: str, relay: Relay, app: App, *extra: str) -> Process:
        env = client_env()
        if kind == "ours":
            env.update(LT_CONFIG_DIR=str(self.tmp / "lt-config"), PYTHONUNBUFFERED="1")
            args = [PYTHON, "-m", "tunnelsite_client.cli"]
        else:
            assert NPM_LT.exists(), "the npm client is not installed; run `make test` once"
            args = [str(NPM_LT)]
        args += ["--port", str(app.port), "--host", f"http://localhost:{relay.port}", *extra]
        return self.group.start(args, env, name=f"{kind} lt")

    def online(self, kind: str, relay: Relay, app: App, name: str, *extra: str) -> Process:
        process = self.start(kind, relay, app, "--subdomain", name, *extra)
        url = process.wait_for_line(r"your url is: (\S+)").group(1)
        assert re.match(rf"https?://{name}\.", url), url
        relay.wait_for_sockets(name, 10)
        return process


def exit_code(process: Process) -> int:
    try:
        code = process.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{process.name} still runs after {EXIT_TIMEOUT_S:g} s:\n{process.output()}")
    process.stop()  # join the output reader: all lines are in
    return code


def bodies(relay: Relay, name: str, count: int = 20) -> set[str]:
    """What `count` visitors get from the tunnel (one fresh connection each)."""
    seen = set()
    for _ in range(count):
        answer = relay.get("/", name=name)
        assert answer.status == 200, answer
        seen.add(answer.body.decode())
    return seen


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = ProcessGroup()
    try:
        yield Procs(group, tmp_path)
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def names_relay(module_relay_factory) -> Relay:
    return module_relay_factory()


# --- item 5: two live clients never share a name ------------------------------------------------
def test_open_tunnel_next_to_a_running_lt_is_refused_and_the_lt_keeps_the_name(names_relay, procs):
    relay, name = names_relay, unique_name("held")
    first = procs.online("ours", relay, procs.app("app-a"), name)
    second_app = procs.app("app-b")

    async def second() -> None:
        host = f"http://localhost:{relay.port}"
        async with open_tunnel(second_app.port, host=host, subdomain=name, timeout_s=10):
            pass

    with pytest.raises(TunnelError) as refused:
        asyncio.run(second())

    assert refused.value.status == 409
    message = refused.value.message
    assert "in use by another client of yours" in message, message
    assert "connected from 127.0.0.1 since" in message and "--takeover" in message, message
    assert bodies(relay, name) == {"app-a"}  # never the second app
    # still its ten: the npm client replaces a socket it closed at once, so counted a moment
    # after the visits one may be on its way back
    relay.wait_for_sockets(name, 10)
    assert first.proc.poll() is None


def test_a_second_npm_client_for_a_live_name_prints_the_refusal_and_exits(names_relay, procs):
    relay, name = names_relay, unique_name("held")
    first = procs.online("npm", relay, procs.app("app-a"), name)

    second = procs.start("npm", relay, procs.app("app-b"), "--subdomain", name)

    assert exit_code(second) != 0
    assert "in use by another client of yours" in second.output(), second.output()
    assert "your url is" not in second.output()
    assert bodies(relay, name) == {"app-a"}
    # still its ten: the npm client replaces a socket it closed at once, so counted a moment
    # after the visits one may be on its way back
    relay.wait_for_sockets(name, 10)
    assert first.proc.poll() is None


def test_takeover_disconnects_the_old_client_which_exits(names_relay, procs):
    relay, name = names_relay, unique_name("moved")
    token = issue_token(relay, unique_name("taker"), "laptop")  # anonymous: never taken over
    old = procs.online("ours", relay, procs.app("app-a"), name, "--token", token)

    new = procs.online("ours", relay, procs.app("app-b"), name, "--takeover", "--token", token)

    code = exit_code(old)
    assert code == EXIT_TAKEN_OVER, old.output()
    assert "was taken over by another client" in old.output(), old.output()
    assert "registering again" not in old.output().split("taken over")[-1]
    assert bodies(relay, name) == {"app-b"}
    # still its ten: the npm client replaces a socket it closed at once, so counted a moment
    # after the visits one may be on its way back
    relay.wait_for_sockets(name, 10)
    assert new.proc.poll() is None


@pytest.mark.parametrize("old_kind", ["ours", "npm"])
def test_an_anonymous_tunnel_is_never_taken_over_while_its_client_is_connected(
    names_relay, procs, old_kind
):
    """Its owner is an address, which every client behind the same NAT shares."""
    relay, name = names_relay, unique_name("kept")
    old = procs.online(old_kind, relay, procs.app("app-a"), name)

    thief = procs.start("ours", relay, procs.app("app-b"), "--subdomain", name, "--takeover")

    assert exit_code(thief) == EXIT_TAKEN, thief.output()
    assert "never taken over" in thief.output(), thief.output()
    assert bodies(relay, name) == {"app-a"}
    # still its ten: the npm client replaces a socket it closed at once, so counted a moment
    # after the visits one may be on its way back
    relay.wait_for_sockets(name, 10)
    assert old.proc.poll() is None


def test_takeover_is_refused_for_another_owners_name(names_relay, procs):
    relay, name = names_relay, unique_name("theirs")
    answer = relay.register(name, source="127.0.0.2")  # another owner, still connecting
    assert answer.status == 200

    thief = procs.start("ours", relay, procs.app("app-b"), "--subdomain", name, "--takeover")

    assert exit_code(thief) == EXIT_TAKEN, thief.output()
    assert "in use by another client" in thief.output()


def test_a_killed_npm_client_gets_its_name_back_at_once_when_restarted(names_relay, procs):
    relay, name = names_relay, unique_name("back")
    app = procs.app("app-a")
    first = procs.online("npm", relay, app, name)
    first.stop()
    relay.wait_for_sockets(name, 0)  # gone: the name waits out its grace period

    procs.online("npm", relay, app, name)  # a restart is not refused

    assert bodies(relay, name) == {"app-a"}


# --- item 6: the relay's routes are not tunnel names --------------------------------------------
@pytest.mark.parametrize("route", ["admin", "healthz", "static"])
@pytest.mark.parametrize("kind", ["ours", "npm"])
def test_a_route_name_is_refused_as_reserved_to_both_clients(names_relay, procs, kind, route):
    client = procs.start(kind, names_relay, procs.app("app-a"), "--subdomain", route)

    code = exit_code(client)

    output = client.output()
    assert code == (EXIT_FORBIDDEN if kind == "ours" else code) and code != 0, output
    assert f"The subdomain '{route}' is reserved" in output, output
    assert "your url is" not in output
    assert names_relay.sockets(route) is None


def test_healthz_answers_health_and_registers_nothing(names_relay):
    before = names_relay.status()["tunnels"]

    answer = names_relay.get("/healthz")

    assert answer.status == 200, answer
    assert answer.json()["status"] == "ok"
    assert names_relay.status()["tunnels"] == before
    assert names_relay.get("/admin").status == 302  # the site's routes still work
