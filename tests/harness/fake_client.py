"""A fake tunnel client: registers over HTTP like `lt`, then speaks raw bytes on its
pool sockets, so a test controls exactly what the relay reads from the tunnel side."""

from __future__ import annotations

import itertools
import json
import select
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from harness import log_capture
from harness.http import DRAIN_READS
from harness.relay import Relay
from harness.waiting import IO_TIMEOUT_S, poll, unique_name
from relay.protocol import (
    CLIENT_ID_HEADER,
    POOL_KIND_HEADER,
    POOL_KIND_UPGRADE,
    POOL_PATH,
    POOL_SECRET_HEADER,
    POOL_UPGRADE,
)


@dataclass
class PoolRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def header_names(self) -> list[str]:
        return [key for key, _ in self.headers]


@dataclass(eq=False)
class PoolSocket:
    """One pool socket opened by the fake client; requests are parsed here by hand."""

    sock: socket.socket
    buffer: bytes = b""
    eof: bool = False

    def _fill(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            raise ConnectionError("the relay closed this pool socket")
        self.buffer += data

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {marker!r} from the relay")
            self._fill(left)
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("body did not arrive")
            self._fill(left)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_request(self, timeout: float = IO_TIMEOUT_S) -> PoolRequest:
        deadline = time.monotonic() + timeout
        raw_head = self._read_until(b"\r\n\r\n", deadline)
        lines = raw_head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        found = dict(headers)
        if "chunked" in found.get("transfer-encoding", ""):
            parts = []
            while True:
                size = int(self._read_until(b"\r\n", deadline).split(b";")[0], 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline):
                        pass
                    break
                parts.append(self._read_exactly(size, deadline))
                self._read_exactly(2, deadline)
            body = b"".join(parts)
        else:
            body = self._read_exactly(int(found.get("content-length", "0")), deadline)
        return PoolRequest(method, target, headers, body, raw_head)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def respond(self, status: int = 200, body: bytes = b"ok", headers: list[str] = ()) -> None:
        head = [f"HTTP/1.1 {status} Status", f"Content-Length: {len(body)}", *headers]
        self.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def is_closed(self, timeout: float = IO_TIMEOUT_S) -> bool:
        """True once the relay closed this socket (bytes it sent meanwhile are buffered)."""
        return bool(poll(self._closed_now, timeout))

    def _closed_now(self) -> bool:
        """Take what has arrived, without waiting; True at the end of the stream."""
        try:
            for _ in range(DRAIN_READS):
                if self.eof:
                    return True
                self._fill(0)
        except ConnectionError:
            return True
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(IO_TIMEOUT_S)
        return self.eof

    def close(self) -> None:
        self.sock.close()


_LOOPBACKS = itertools.count()


def fresh_loopback() -> str:
    """A loopback address no other fake client of this test run uses (127.1.x.y).

    Each fake client is then an anonymous owner of its own, so tests that open many tunnels
    on one relay meet the per-address caps (live tunnels, connections) only when they mean
    to, and the relay runs with its default caps. 127.0.0.x stays free for tests that pick
    a 'foreign' address themselves."""
    n = next(_LOOPBACKS) % (250 * 250)
    return f"127.1.{n // 250}.{n % 250 + 1}"


class FakeTunnelClient:
    """Registers a tunnel over HTTP like `lt`, then opens pool sockets on demand."""

    def __init__(
        self,
        relay: Relay,
        name: str | None = None,
        source: str | None = None,
        headers: list[tuple[str, str]] | None = None,  # a token's, for one
    ):
        source = source or fresh_loopback()
        self.relay = relay
        target = f"/{name or unique_name('fake')}"
        answer = relay.get(target, headers=headers, source=source)
        assert answer.status == 200, answer
        info = answer.json()
        self.name: str = info["id"]
        self.port: int = info["port"]
        self.max_conn_count: int = info["max_conn_count"]
        self.source = source
        self.sockets: list[PoolSocket] = []

    def connect(self, count: int = 1, source: str | None = None) -> list[PoolSocket]:
        """Open `count` pool sockets and wait until the relay counts them."""
        before = self.relay.sockets(self.name) or 0
        opened = [self.open(source) for _ in range(count)]
        self.relay.wait_for_sockets(self.name, before + count)
        return opened

    def open(self, source: str | None = None) -> PoolSocket:
        """Open one pool socket without waiting for the relay to accept it."""
        sock = socket.create_connection(
            ("127.0.0.1", self.port),
            timeout=IO_TIMEOUT_S,
            source_address=(source or self.source, 0),
        )
        pool_socket = PoolSocket(sock)
        self.sockets.append(pool_socket)
        return pool_socket

    def next_request(self, timeout: float = IO_TIMEOUT_S) -> tuple[PoolSocket, PoolRequest]:
        """The next request the relay sends on any open pool socket, and that socket."""
        deadline = time.monotonic() + timeout
        while True:
            live = [s for s in self.sockets if not s.eof]
            for pool_socket in live:
                if pool_socket.buffer:
                    return pool_socket, pool_socket.read_request(deadline - time.monotonic())
            left = deadline - time.monotonic()
            if left <= 0 or not live:
                raise TimeoutError("no request reached the fake client")
            readable, _, _ = select.select([s.sock for s in live], [], [], left)
            for pool_socket in live:
                if pool_socket.sock in readable:
                    try:
                        pool_socket._fill(left)
                    except ConnectionError:
                        continue
                    return pool_socket, pool_socket.read_request(deadline - time.monotonic())

    def close(self) -> None:
        for pool_socket in self.sockets:
            pool_socket.close()
        self.sockets.clear()


# Our lt's User-Agent (the relay answers it as a tunnel client, relay.protocol).
LT_USER_AGENT = "tunnelsite-lt/fake"
_CLIENT_IDS = itertools.count()


@dataclass
class UpgradeAnswer:
    """The relay's answer to a pool upgrade: the status, headers and (for a refusal) body."""

    status: int
    headers: dict[str, str]
    body: bytes
    pool_socket: PoolSocket

    def message(self) -> str:
        return str(json.loads(self.body)["message"])


class UpgradingTunnelClient(FakeTunnelClient):
    """Registers like our `lt` (with a client id), then opens its pool connections as
    upgrades on the relay's own port (relay.protocol, "pool connections over the relay's
    own port"), byte by byte."""

    def __init__(self, relay: Relay, name: str | None = None, source: str | None = None):
        self.relay = relay
        self.source = source or fresh_loopback()
        self.client_id = f"fake-upgrading-{next(_CLIENT_IDS):06d}"
        self.sockets = []
        info = self.register(name or unique_name("up"))
        self.name = info["id"]
        self.port = info["port"]
        self.max_conn_count = info["max_conn_count"]

    def register(self, name: str, source: str | None = None, secret: str = "") -> dict:
        """`GET /<name>` as our lt sends it; keeps the answer's pool URL and secret."""
        headers = [
            ("User-Agent", LT_USER_AGENT),
            (CLIENT_ID_HEADER, self.client_id),
            (POOL_KIND_HEADER, POOL_KIND_UPGRADE),
        ]
        if secret:
            headers.append((POOL_SECRET_HEADER, secret))
        answer = self.relay.get(f"/{name}", headers=headers, source=source or self.source)
        assert answer.status == 200, answer
        self.registration_headers: list[tuple[str, str]] = answer.headers
        info = answer.json()
        self.pool_url: str = info["pool_url"]
        self.secret: str = info["pool_secret"]
        log_capture.remember(self.secret, f"the pool secret of {info['id']!r} (a fake lt)")
        return info

    def upgrade_head(self, secret: str | None = None, name: str | None = None) -> bytes:
        """The upgrade request; `secret` None: this registration's, "": none at all."""
        secret = self.secret if secret is None else secret
        lines = [
            f"GET {POOL_PATH.format(name=name or self.name)} HTTP/1.1",
            f"Host: {urlsplit(self.pool_url).netloc}",
            "Connection: Upgrade",
            f"Upgrade: {POOL_UPGRADE}",
        ]
        if secret:
            lines.append(f"{POOL_SECRET_HEADER}: {secret}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def upgrade(
        self,
        head: bytes | None = None,
        source: str | None = None,
        timeout: float = IO_TIMEOUT_S,
        port: int | None = None,
    ) -> UpgradeAnswer:
        """Send an upgrade request (this registration's by default) on a new connection to
        the pool URL's port (or `port`) and read the answer's head (and a refusal's body)."""
        sock = socket.create_connection(
            ("127.0.0.1", port or urlsplit(self.pool_url).port),
            timeout=IO_TIMEOUT_S,
            source_address=(source or self.source, 0),
        )
        pool_socket = PoolSocket(sock)
        self.sockets.append(pool_socket)
        sock.sendall(self.upgrade_head() if head is None else head)
        deadline = time.monotonic() + timeout
        raw = pool_socket._read_until(b"\r\n\r\n", deadline).decode("latin-1")
        lines = raw.split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        body = b""
        if status != 101:
            body = pool_socket._read_exactly(int(headers.get("content-length", "0")), deadline)
        return UpgradeAnswer(status, headers, body, pool_socket)

    def open(self, source: str | None = None) -> PoolSocket:
        """One upgraded pool connection (the relay answered 101)."""
        answer = self.upgrade(source=source)
        assert answer.status == 101, answer
        return answer.pool_socket
