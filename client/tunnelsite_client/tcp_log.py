"""What a TCP tunnel tells its owner: one `TcpConnectionLog` per visitor connection that
ended, and the `TcpObserver` the pool reports to (the tunnel, which counts and displays)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TcpConnectionLog:
    visitor: str  # "<ip> <port>" as the relay's OPEN said it
    bytes_in: int  # from the visitor to the app
    bytes_out: int  # from the app to the visitor
    duration_s: float
    ending: str  # "" for a clean end (EOF both ways), else why it ended


class TcpObserver(Protocol):
    def connection_started(self) -> None: ...
    def connection_done(self, log: TcpConnectionLog) -> None: ...
    def local_unreachable(self, reason: str) -> None: ...
    def local_reachable(self) -> None: ...
    def count_bytes(self, received: int, sent: int) -> None: ...
