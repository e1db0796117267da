"""A local app that breaks HTTP framing on purpose, for the kept-connection tests.

Run `python tests/apps/hostile_app.py`; it prints `hostile app listening on
http://127.0.0.1:PORT` once it accepts connections. Keep-alive, one thread per connection,
its own tiny parser (not h11), so it reads exactly what it is sent and nothing more.

Every request target is `/<tag>/<mode>`; the honest part of each answer has the header
`X-Tag: <tag>` (and the body `tag:<tag>`), so a visitor can tell its own answer from
another visitor's. Modes:

  ok           a correct answer
  extra        a correct answer (Content-Length), then a whole second response for tag
               `poison` in the same write
  switch       `101 Switching Protocols` to whatever was asked, then a response for
               `poison`
  body         a status-only answer (HEAD, 204 or 304 as the method / `?status=` says)
               that carries a body anyway: itself a response for tag `poison`
  continues    `?n=N` interim `100 Continue` answers, then a correct answer
  early        answers at once without reading the request body; keeps reading the
               connection, so a body that is itself a request gets answered too
  close        a correct answer with `Connection: close`, then closes
  trailer      a correct chunked answer with a trailer, then a response for `poison`

`?late=` sends the poison of `extra`, `body`, `continues` and `trailer` in a write of its
own instead of with the answer (buggy apps write the extra bytes a little later):
  late=MS      MS milliseconds after the answer; then prints `poison sent after <tag>`
  late=next    when the next request arrives on the connection, with that request's
               answer (the worst case: the poison comes after the next request was sent)
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024


def response(tag: str, status: int = 200, extra_headers: str = "", body: bool = True) -> bytes:
    """An answer tagged in a header (`X-Tag`) and, when it has one, in its body."""
    payload = f"tag:{tag}".encode()
    framing = f"Content-Length: {len(payload)}\r\n" if status not in (204, 304) else ""
    head = f"HTTP/1.1 {status} X\r\nX-Tag: {tag}\r\n{framing}{extra_headers}\r\n"
    return head.encode() + (payload if body else b"")


POISON = response("poison")


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.pending = b""  # late=next: the poison, sent with the next answer

    def read_head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                return None
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head

    def write(self, data: bytes) -> None:
        """Send `data`, after a poison held back by late=next (in the same write)."""
        data, self.pending = self.pending + data, b""
        self.sock.sendall(data)

    def skip_body(self, length: int) -> None:
        while len(self.buffer) < length:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError
            self.buffer += data
        self.buffer = self.buffer[length:]


def send(conn: Conn, answer: bytes, poison: bytes, late: str, tag: str) -> None:
    """The answer, then the poison: at once, MS ms later, or with the next answer."""
    if not late:
        conn.write(answer + poison)
    elif late == "next":
        conn.write(answer)
        conn.pending = poison
    else:
        conn.write(answer)
        time.sleep(int(late) / 1000)  # the bug being imitated, not a synchronisation
        try:
            conn.sock.sendall(poison)
        finally:
            print(f"poison sent after {tag}", flush=True)


def serve(sock: socket.socket) -> None:
    conn = Conn(sock)
    try:
        while True:
            head = conn.read_head()
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            url = urlsplit(target)
            query = parse_qs(url.query)
            parts = url.path.strip("/").split("/")
            tag, mode = parts[0], parts[1] if len(parts) > 1 else "ok"
            if mode != "early":
                conn.skip_body(length)
            late = query.get("late", [""])[0]
            if mode == "extra":
                send(conn, response(tag), POISON, late, tag)
            elif mode == "switch":
                switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                conn.write(switch + b"Connection: upgrade\r\n\r\n" + POISON)
            elif mode == "body":
                status = int(query.get("status", ["200"])[0])
                send(conn, response(tag, status, body=False), POISON, late, tag)
            elif mode == "continues":
                count = int(query.get("n", ["1"])[0])
                interim = b"HTTP/1.1 100 Continue\r\n\r\n" * count
                send(conn, interim + response(tag), POISON if late else b"", late, tag)
            elif mode == "trailer":
                head = f"HTTP/1.1 200 X\r\nX-Tag: {tag}\r\nTransfer-Encoding: chunked\r\n\r\n"
                payload = f"tag:{tag}".encode()
                body = b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(payload), payload)
                send(conn, head.encode() + body, POISON, late, tag)
            elif mode == "close":
                conn.write(response(tag, extra_headers="Connection: close\r\n"))
                return
            else:  # ok, early
                conn.write(response(tag))
    except (OSError, ValueError):
        return
    finally:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", args.port))
    print(f"hostile app listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
