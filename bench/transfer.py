"""One big download or upload over a socket (TLS to a relay's https port), timed, with its
sha256 checked.

wrk cannot check what it received, so the 100 MiB scenarios use this instead: one request
on a fresh connection, the body hashed as it streams, MB/s from the request's first byte
out to the response's last byte in.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time
from dataclasses import dataclass

from bench import payload

IO_TIMEOUT_S = 30.0  # per socket operation; a stalled transfer fails instead of hanging
RECV_BYTES = 1024 * 1024


class TransferError(Exception):
    pass


@dataclass
class TransferResult:
    bytes: int
    seconds: float
    sha256_ok: bool

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6


def _head(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str]]:
    """Read a response head; returns (status, headers) and leaves body bytes in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise TransferError("connection closed before the response head")
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def _connect(port: int, tls: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not tls:
        return sock
    # The relay over TLS (its own certificate, the benchmark's throwaway CA): encrypted like
    # a visitor's browser, the certificate itself is not what is measured.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock)


def _lines(headers: tuple[str, ...]) -> str:
    return "".join(f"{header}\r\n" for header in headers)


def download(
    port: int, host: str, size: int, tls: bool = False, extra: tuple[str, ...] = ()
) -> TransferResult:
    expected = payload.sha256_of(size)
    digest = hashlib.sha256()
    with _connect(port, tls) as sock:
        started = time.perf_counter()
        request = (
            f"GET /download/{size} HTTP/1.1\r\nHost: {host}\r\n{_lines(extra)}"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(request.encode())
        buffer = bytearray()
        status, headers = _head(sock, buffer)
        if status != 200:
            raise TransferError(f"download answered {status}")
        length = int(headers.get("content-length", "-1"))
        received = len(buffer)
        digest.update(buffer)
        chunk = bytearray(RECV_BYTES)
        view = memoryview(chunk)
        while received < length:
            count = sock.recv_into(chunk)
            if not count:
                break
            digest.update(view[:count])
            received += count
        seconds = time.perf_counter() - started
    if received != size:
        raise TransferError(f"download got {received} of {size} bytes")
    return TransferResult(received, seconds, digest.hexdigest() == expected)


def upload(
    port: int, host: str, size: int, tls: bool = False, extra: tuple[str, ...] = ()
) -> TransferResult:
    expected = payload.sha256_of(size)
    with _connect(port, tls) as sock:
        started = time.perf_counter()
        head = (
            f"POST /sha256 HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n{_lines(extra)}"
            "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        for piece in payload.chunks(size):
            sock.sendall(piece)
        buffer = bytearray()
        status, headers = _head(sock, buffer)
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            data = sock.recv(65536)
            if not data:
                break
            buffer += data
        seconds = time.perf_counter() - started
    if status != 200:
        raise TransferError(f"upload answered {status}: {bytes(buffer[:200])!r}")
    answer = json.loads(bytes(buffer[:length]))
    ok = answer.get("sha256") == expected and answer.get("length") == size
    return TransferResult(size, seconds, ok)
