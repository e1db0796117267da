"""What our lt's exchange (tunnelsite_client.exchange.PoolSocketProxy) reports to its
observer, recorded for the tests that drive it on real sockets and in-process."""

from __future__ import annotations

from tunnelsite_client.exchange import RequestLog


class Observer:
    def __init__(self) -> None:
        self.logs: list[RequestLog] = []
        self.unreachable: list[str] = []
        self.keepalive_off_reasons: list[str] = []
        self.received = self.sent = 0

    def keepalive_off(self, reason: str) -> None:
        self.keepalive_off_reasons.append(reason)

    def request_done(self, log: RequestLog) -> None:
        self.logs.append(log)

    def local_unreachable(self, reason: str) -> None:
        self.unreachable.append(reason)

    def local_reachable(self) -> None:
        pass

    def count_bytes(self, received: int, sent: int) -> None:
        self.received += received
        self.sent += sent
