"""A TCP forwarder in front of a relay that reads the registration answers passing through it
and remembers each pool secret in them (`log_capture.remember`), so the session's secret scan
also looks for the pool secrets a real relay gave a real lt (which no test sees otherwise).

Byte for byte both ways, a thread per direction; it reads what goes by, it never changes it.
"""

from __future__ import annotations

import re
import socket
import threading
from types import TracebackType

from harness import log_capture

POOL_SECRET = re.compile(rb'"pool_secret":\s*"([^"\\]{8,})"')
PIECE = 65536
LOOKBACK = 512  # a secret split across two reads is found in the joined tail


class RegistrationTap:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.seen: list[str] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # the connections' sockets (both ends)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="tap-accept").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._open |= {client, upstream}
            ends = [2]  # the second direction to end closes both sockets
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._copy, args=(source, sink, answers, ends), daemon=True
                ).start()

    def _copy(
        self, source: socket.socket, sink: socket.socket, answers: bool, ends: list[int]
    ) -> None:
        tail = b""
        try:
            while data := source.recv(PIECE):
                if answers:
                    window = tail + data
                    for match in POOL_SECRET.finditer(window):
                        self._found(match.group(1).decode())
                    tail = window[-LOOKBACK:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shut(sink)
            _shut(source)
            with self._lock:
                ends[0] -= 1
                last = ends[0] == 0
                if last:
                    self._open -= {source, sink}
            if last:
                source.close()
                sink.close()

    def _found(self, secret: str) -> None:
        with self._lock:
            if secret not in self.seen:
                self.seen.append(secret)
        log_capture.remember(secret, "a pool secret a real relay gave a real lt")

    def drop(self) -> None:
        """Cut every connection through the tap (the listener stays): lt has to come back.
        The copying threads close the sockets as they end."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.drop()
        _shut(self.listener)
        self.listener.close()

    def __enter__(self) -> RegistrationTap:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
