"""The quick start, as written: `make run`, both clients, curl, then Ctrl-C for each."""

from __future__ import annotations

import re

from harness.http import Visitor
from harness.newcomer import (
    Clone,
    commands,
    fence_after,
    readme_section,
    replace,
    wait_for_sockets,
)
from harness.relay import NPM_LT

QUICK_START = readme_section("Quick start")


def on_ports(command: str, relay_port: int, app_port: int) -> str:
    """The quick start's ports (relay 8080, app 3000) become the test's free ones."""
    command = replace(command, "8080", str(relay_port))
    return command.replace("3000", str(app_port))


def test_the_quick_start_works_as_written_with_both_clients(clone: Clone, app: int) -> None:
    (make_run,) = [c for c in commands(fence_after(QUICK_START, "```sh")) if c == "make run"]
    # RELAY_PORT=0: the quick start's :8080 on a free port (the one thing this test changes).
    # The clone is installed first, with its own deadline (RUN_TIMEOUT_S), as test_production
    # does. Else `make run` installs it (pip with build isolation: 5-6 s lightly loaded, over
    # a minute once under 14 busy loops on 2 cores) whenever this test runs first in its
    # process, and the wait below, for starting a relay (migrate and runrelay: 1.2-1.4 s
    # once installed), would cover the install too.
    clone.bootstrap()
    relay = clone.start(make_run, clone.env(RELAY_PORT="0"), "make run")
    port = int(relay.wait_for_line(r"tunnelsite relay listening on http://127\.0\.0\.1:(\d+)")[1])
    printed = fence_after(QUICK_START, "`make run` prints where it listens:").splitlines()
    relay.wait_for_line(re.escape(printed[-1].replace("8080", str(port))))
    for line in printed:
        assert line.replace("8080", str(port)) in relay.output().splitlines(), line

    npm_lines = commands(fence_after(QUICK_START, "with the npm client:"))
    random_name, my_app = npm_lines
    curls = commands(fence_after(QUICK_START, "Programs that ask the system resolver"))
    assert len(curls) == 2 and all(c.startswith("curl ") for c in curls), curls

    # `npx -y localtunnel@2.0.2` would fetch that version from the network: this is the same one.
    def npm(command: str) -> str:
        return replace(on_ports(command, port, app), "npx -y localtunnel@2.0.2", str(NPM_LT))

    client = clone.start(npm(random_name), clone.env(), "npx localtunnel")
    url = client.wait_for_line(r"your url is: (\S+)")[1]
    name = re.fullmatch(rf"http://([a-z0-9-]+)\.localhost:{port}", url)
    assert name, url
    wait_for_sockets(port, name[1])
    with Visitor(port, f"{name[1]}.localhost:{port}") as visitor:
        assert visitor.request("GET", "/").status == 200
    client.interrupt()

    (ours,) = commands(fence_after(QUICK_START, "our own `lt`"))
    # The same name with each client in turn (the npm one's grace period is reclaimed).
    for kind, start in [("npm", npm(my_app)), ("ours", on_ports(ours, port, app))]:
        client = clone.start(start, clone.env(), kind)
        assert client.wait_for_line(r"your url is: (\S+)")[1] == f"http://my-app.localhost:{port}"
        wait_for_sockets(port, "my-app")
        for curl in curls:
            page = clone.run(on_ports(curl, port, app), clone.env())
            assert "Directory listing for /" in page, page
        code = client.interrupt()
        if kind == "ours":
            assert code == 0, client.output()  # README, exit codes: 0 after Ctrl-C

    relay.interrupt()
    assert "Traceback" not in relay.output(), relay.output()
