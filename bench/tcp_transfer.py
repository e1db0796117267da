"""A TCP visitor of bench/tcp_app.py: downloads, uploads and echoes of the pattern, each byte
hashed as it streams (nothing holds the whole transfer), timed and checked with sha256.

The same functions measure `make bench`'s TCP scenario and drive tests/tcp: a tunnel's
tcp://host:port and the app's own port are used the same way.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench import payload
from bench.transfer import TransferError, TransferResult

IO_TIMEOUT_S = 30.0  # per socket operation: a stalled transfer fails instead of hanging
RECV_BYTES = 256 * 1024
REPLY_BYTES = 128  # "<count> <sha256>\n"

Transfer = Callable[[int, int, str], TransferResult]


def connect(port: int, host: str = "127.0.0.1", timeout: float = IO_TIMEOUT_S) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _send_pattern(sock: socket.socket, length: int) -> None:
    for piece in payload.chunks(length):
        sock.sendall(piece)


def read_to_eof(sock: socket.socket) -> tuple[int, str]:
    """(bytes, sha256) of everything until the peer's FIN."""
    digest, count = hashlib.sha256(), 0
    while data := sock.recv(RECV_BYTES):
        digest.update(data)
        count += len(data)
    return count, digest.hexdigest()


def read_line(sock: socket.socket) -> str:
    """One short line (an answer), read until its newline or the peer's FIN."""
    buffer = b""
    while not buffer.endswith(b"\n") and len(buffer) < REPLY_BYTES:
        data = sock.recv(REPLY_BYTES - len(buffer))
        if not data:
            break
        buffer += data
    return buffer.decode("ascii", "replace").strip()


def download(port: int, length: int, host: str = "127.0.0.1") -> TransferResult:
    """SEND: `length` bytes from the app, hashed as they arrive."""
    with connect(port, host) as sock:
        started = time.perf_counter()
        sock.sendall(f"SEND {length}\n".encode())
        count, sha = read_to_eof(sock)
        seconds = time.perf_counter() - started
    return TransferResult(count, seconds, count == length and sha == payload.sha256_of(length))


def upload(port: int, length: int, host: str = "127.0.0.1") -> TransferResult:
    """SINK: `length` bytes to the app, then our FIN; the app's count and sha256 after it."""
    with connect(port, host) as sock:
        started = time.perf_counter()
        sock.sendall(b"SINK\n")
        _send_pattern(sock, length)
        sock.shutdown(socket.SHUT_WR)
        answer = read_line(sock)
        seconds = time.perf_counter() - started
    return TransferResult(length, seconds, answer == f"{length} {payload.sha256_of(length)}")


def echo(port: int, length: int, host: str = "127.0.0.1") -> TransferResult:
    """ECHO: `length` bytes each way at once (a thread sends while this one reads)."""
    with connect(port, host) as sock:
        started = time.perf_counter()
        sock.sendall(b"ECHO\n")
        failed: list[BaseException] = []

        def send() -> None:
            try:
                _send_pattern(sock, length)
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                failed.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        count, sha = read_to_eof(sock)
        sender.join(IO_TIMEOUT_S)
        seconds = time.perf_counter() - started
    if failed:
        raise TransferError(f"sending failed: {failed[0]}")
    return TransferResult(2 * count, seconds, count == length and sha == payload.sha256_of(length))


def parallel(
    transfer: Transfer, port: int, length: int, connections: int, host: str = "127.0.0.1"
) -> TransferResult:
    """`connections` transfers of `length` bytes at once: all the bytes over the wall time;
    sha256_ok only when every one checked out."""
    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(lambda _: transfer(port, length, host), range(connections)))
    seconds = time.perf_counter() - started
    total = sum(result.bytes for result in results)
    return TransferResult(total, seconds, all(result.sha256_ok for result in results))


def stats(port: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """The app's (bytes sent by SEND so far, connections so far)."""
    with connect(port, host) as sock:
        sock.sendall(b"STATS\n")
        sent, connections = read_line(sock).split()
    return int(sent), int(connections)
