"""What `lt` shows on a real terminal (a pty): the status block as styled text, never markup."""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

from harness.terminal import Terminal

if TYPE_CHECKING:
    from harness.local_apps import ThreadedHttpApp
    from harness.relay_double import RelayDouble

LT = [sys.executable, "-m", "tunnelsite_client.cli"]


def test_the_status_block_shows_styles_not_markup_while_requests_scroll_above_it(
    relay: RelayDouble, app: ThreadedHttpApp, lt_env: dict[str, str]
):
    env = {**lt_env, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    with socket.socket() as closed:  # a port where no app listens: every request fails
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    terminal = Terminal(
        [*LT, "--port", str(app.port), "--host", relay.url, "--print-requests"], env
    )
    broken = Terminal([*LT, "--port", str(dead_port), "--host", relay.url, "--print-requests"], env)
    try:
        for term, status in ((terminal, 200), (broken, 502)):
            name = term.wait_for(r"your url is: http://([a-z0-9-]+)\.")[1]
            relay.wait_for_sockets(name)
            term.wait_for(r"State\s+online")
            for index in range(20):  # each request line redraws the block below it
                assert relay.request(name, "GET", f"/page-{index}").status == status
            term.wait_for(rf"GET /page-19 {status}")
        broken.wait_for(r"Last error\s+local app at")
    finally:
        terminal.stop()
        broken.stop()

    for term in (terminal, broken):
        shown = term.text()
        assert "online" in shown
        for markup in ("[green]", "[red]", "[yellow]", "[cyan]", "[/]"):
            assert markup not in shown, f"{markup} on the terminal:\n{shown[-3000:]}"
