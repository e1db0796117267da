"""What a running tunnel shows: its live status, and who is told of its changes.

`TunnelStatus` is updated in place by the tunnel and read by the display; a `Reporter`
gets one call per change. `RedactingReporter` masks the run's secrets in everything it
passes on; `LogReporter` is the library's default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from .printable import printable
from .redact import redact
from .target import RequestLog
from .tcp_log import TcpConnectionLog

log = logging.getLogger("tunnelsite_client")


@dataclass
class TunnelStatus:
    """What the display shows; updated in place by the tunnel."""

    url: str = ""
    relay: str = ""
    state: str = "connecting"
    sockets_up: int = 0
    sockets_max: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_error: str = ""
    local_down: bool = False
    visitors: str = ""  # the visitor rules this client asked for, without secrets
    limits: str = ""  # the account's limits, as the relay gave them (registration.describe_limits)
    forwarding: str = ""  # a TCP tunnel's "tcp://host:port -> localhost:5432"
    connections_open: int = 0  # a TCP tunnel's visitor connections now
    connections: int = 0  # a TCP tunnel's visitor connections that ended


class Reporter(Protocol):
    """Receives the tunnel's state changes (one call per change) and request logs."""

    def event(self, text: str) -> None: ...
    def url(self, url: str) -> None: ...
    def request(self, log: RequestLog) -> None: ...
    def connection(self, log: TcpConnectionLog) -> None: ...
    def changed(self) -> None: ...


class RedactingReporter:
    """Passes everything on with the run's secrets masked (see redact.py): relay
    messages, errors and URLs may all carry a token or a password."""

    def __init__(self, reporter: Reporter, secrets: set[str]) -> None:
        self.reporter = reporter
        self.secrets = secrets

    def event(self, text: str) -> None:
        self.reporter.event(redact(text, self.secrets))

    def url(self, url: str) -> None:
        self.reporter.url(redact(url, self.secrets))

    def request(self, log: RequestLog) -> None:
        self.reporter.request(log)  # a visitor's request line: the user's own traffic

    def connection(self, log: TcpConnectionLog) -> None:
        self.reporter.connection(log)  # a visitor's address and byte counts

    def changed(self) -> None:
        self.reporter.changed()


class LogReporter:
    """The library default: state changes go to the `tunnelsite_client` logger."""

    def event(self, text: str) -> None:
        log.info("%s", printable(text, None))  # it may carry the relay's text

    def url(self, url: str) -> None:
        log.info("your url is: %s", printable(url, None))

    def request(self, log_: RequestLog) -> None:
        log.debug("%s %s %s", log_.method, log_.target, log_.status)

    def connection(self, log_: TcpConnectionLog) -> None:
        log.debug("visitor %s %d in %d out", log_.visitor, log_.bytes_in, log_.bytes_out)

    def changed(self) -> None:
        pass
