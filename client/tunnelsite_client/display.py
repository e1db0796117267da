"""What `lt` shows: a status block updated in place on a terminal, plain lines otherwise.

Either way `your url is: <url>` is printed on a line of its own (scripts grep it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import webbrowser
from typing import TYPE_CHECKING, TextIO

from .limits import DISPLAY_REFRESHES_PER_S
from .printable import printable
from .reporting import TunnelStatus
from .sizes import binary
from .target import RequestLog
from .tcp_log import TcpConnectionLog

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def request_line(entry: RequestLog) -> str:
    """One `--print-requests` line: time, method, path, status, duration."""
    return (
        f"{_clock()} {entry.method} {entry.target} {entry.status} {entry.duration_s * 1000:.0f} ms"
    )


def connection_line(entry: TcpConnectionLog) -> str:
    """One `lt tcp --print-requests` line: a visitor connection that ended."""
    ip, _, port = entry.visitor.partition(" ")
    visitor = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    line = (
        f"{_clock()} visitor {visitor}  {human_bytes(entry.bytes_in)} in  "
        f"{human_bytes(entry.bytes_out)} out  {entry.duration_s:.1f} s"
    )
    return f"{line}  ({entry.ending})" if entry.ending else line


def human_bytes(count: int) -> str:
    return binary(count)


class PlainDisplay:
    """Plain log lines, one per state change: for pipes, files and CI logs."""

    def __init__(
        self, out: TextIO | None = None, print_requests: bool = False, open_url: bool = False
    ) -> None:
        self.out: TextIO | None = out or sys.stdout
        self.print_requests = print_requests
        self.open_url = open_url
        self._opened = False

    def _line(self, text: str) -> None:
        """Print one line. Every line lt prints goes through here and printable(): it may
        carry the relay's text (a message, a name, a URL), and no byte of it may act on the
        terminal or break the line."""
        if self.out is None:
            return
        try:
            print(printable(text, None), file=self.out, flush=True)
        except (BrokenPipeError, ValueError):
            # The reader went away (`lt ... | grep -m1 url`): keep the tunnel up, stop
            # printing, and point stdout at /dev/null so exiting does not complain either.
            self.out = None
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())

    def start(self, status: TunnelStatus) -> None:
        pass

    def stop(self) -> None:
        pass

    def url(self, url: str) -> None:
        self._line(f"your url is: {url}")
        if self.open_url and not self._opened:
            self._opened = True
            webbrowser.open(url)

    def event(self, text: str) -> None:
        self._line(f"{_clock()} {text}")

    def request(self, entry: RequestLog) -> None:
        if self.print_requests:
            self._line(request_line(entry))

    def connection(self, entry: TcpConnectionLog) -> None:
        if self.print_requests:
            self._line(connection_line(entry))

    def changed(self) -> None:
        pass


class LiveDisplay(PlainDisplay):
    """A rich status block (URL, relay, sockets, requests, bytes, last error) kept up to
    date in place; events and requests scroll above it."""

    def __init__(self, print_requests: bool = False, open_url: bool = False) -> None:
        super().__init__(sys.stdout, print_requests, open_url)
        self._live: Live | None = None
        self._status: TunnelStatus | None = None

    def start(self, status: TunnelStatus) -> None:
        from rich.live import Live

        self._status = status
        self._live = Live(
            get_renderable=self._render, refresh_per_second=DISPLAY_REFRESHES_PER_S, transient=False
        )
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _line(self, text: str) -> None:
        if self._live is None:
            super()._line(text)
        else:
            text = printable(text, None)
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def changed(self) -> None:
        pass  # the block redraws itself 4 times a second, however busy the tunnel is

    def _render(self) -> RenderableType:
        # Cells are Text, never markup strings: the block is also redrawn by every line
        # printed above it, with that print's options (markup off for request lines), so
        # markup would show as raw "[green]...[/]"; and a URL or error needs no escaping. Each
        # cell goes through printable(): the URL, the relay and the last error are the relay's.
        from rich.table import Table
        from rich.text import Text

        status = self._status
        grid = Table.grid(padding=(0, 2))

        def cell(text: str, style: str = "") -> Text:  # the relay's text, in places
            return Text(printable(text, None), style=style)

        grid.add_column(style="bold")
        grid.add_column()
        if status is None:
            return grid
        colour = {"online": "green", "reconnecting": "yellow"}.get(status.state, "cyan")
        grid.add_row(cell("URL"), cell(status.url or "…"))
        if status.forwarding:
            grid.add_row(cell("Forwarding"), cell(status.forwarding))
        grid.add_row(cell("Relay"), cell(status.relay))
        if status.visitors:
            grid.add_row(cell("Visitors"), cell(status.visitors))
        grid.add_row(cell("State"), cell(status.state, style=colour))
        grid.add_row(cell("Sockets"), cell(f"{status.sockets_up}/{status.sockets_max}"))
        if status.forwarding:
            connections = f"{status.connections_open} open, {status.connections} ended"
            grid.add_row(cell("Connections"), cell(connections))
        else:
            grid.add_row(cell("Requests"), cell(str(status.requests)))
        traffic = f"in {human_bytes(status.bytes_in)}, out {human_bytes(status.bytes_out)}"
        grid.add_row(cell("Traffic"), cell(traffic))
        if status.last_error:
            grid.add_row(cell("Last error"), cell(status.last_error, style="red"))
        return grid
