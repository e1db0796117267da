"""Register many tunnels and hold each one's full pool of idle sockets: the scale scenario.

    python -m bench.holder --port RELAYPORT --tunnels 1000 [--concurrency 32]

One process, asyncio. It raises its open-file limit to the hard limit, registers the
tunnels with `GET /?new` from `--concurrency` keep-alive connections (timed: registrations
per second), opens `max_conn_count` sockets to each returned port and prints

    HOLDER {"event": "ready", ...}

Then it waits for a line `teardown` on stdin, closes every socket, deletes every tunnel
with `DELETE /api/tunnels/<id>`, prints `HOLDER {"event": "done", ...}` and exits.
The sockets send nothing: an idle pool socket is exactly what a connected client holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

IO_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 600.0


def raise_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def say(event: str, **fields: Any) -> None:
    print("HOLDER " + json.dumps({"event": event, **fields}), flush=True)


class Idle(asyncio.Protocol):
    """A pool socket that only waits; counts how many are still open."""

    open_count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Idle.open_count += 1

    def data_received(self, data: bytes) -> None:
        pass  # a request would only come from a visitor; there are none

    def connection_lost(self, exc: Exception | None) -> None:
        Idle.open_count -= 1


class KeepAlive:
    """One keep-alive HTTP/1.1 connection to the relay's public port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str) -> tuple[int, bytes]:
        async with asyncio.timeout(IO_TIMEOUT_S):
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            self.writer.write((head + "Content-Length: 0\r\n\r\n").encode())
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and "close" in value.lower():
                    close = True
            body = await self.reader.readexactly(length) if length else b""
            if close:
                self.close()
            return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _workers(port: int, count: int, jobs: list[Any], work: Any) -> list[Any]:
    """Run `work(conn, job)` over `jobs` from `count` keep-alive connections to `port`."""
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    for item in enumerate(jobs):
        queue.put_nowait(item)
    results: list[Any] = [None] * len(jobs)

    async def worker(conn: KeepAlive) -> None:
        try:
            while not queue.empty():
                index, job = queue.get_nowait()
                results[index] = await work(conn, job)
        finally:
            conn.close()

    await asyncio.gather(*(worker(KeepAlive(port)) for _ in range(count)))
    return results


async def register(conn: KeepAlive, _job: int) -> dict[str, Any]:
    status, body = await conn.request("GET", "/?new")
    if status != 200:
        raise RuntimeError(f"registration answered {status}: {body[:200]!r}")
    return json.loads(body)


async def delete(conn: KeepAlive, name: str) -> int:
    status, _ = await conn.request("DELETE", f"/api/tunnels/{name}")
    return status


async def run(port: int, tunnels: int, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    limit = raise_open_file_limit()

    started = time.perf_counter()
    answers = await _workers(port, concurrency, list(range(tunnels)), register)
    register_s = time.perf_counter() - started

    transports: list[asyncio.BaseTransport] = []
    gate = asyncio.Semaphore(256)

    async def connect(answer_port: int) -> None:
        async with gate, asyncio.timeout(IO_TIMEOUT_S):
            transport, _ = await loop.create_connection(Idle, "127.0.0.1", answer_port)
            transports.append(transport)

    started = time.perf_counter()
    await asyncio.gather(
        *(connect(a["port"]) for a in answers for _ in range(int(a.get("max_conn_count", 1))))
    )
    connect_s = time.perf_counter() - started
    say(
        "ready",
        tunnels=len(answers),
        sockets=len(transports),
        max_conn_count=answers[0]["max_conn_count"] if answers else 0,
        register_s=register_s,
        connect_s=connect_s,
        open_file_limit=limit,
    )

    async with asyncio.timeout(COMMAND_TIMEOUT_S):
        command = await loop.run_in_executor(None, sys.stdin.readline)
    if command.strip() != "teardown":
        say("aborted", command=command.strip())
        return

    started = time.perf_counter()
    for transport in transports:
        transport.close()
    statuses = await _workers(port, concurrency, [a["id"] for a in answers], delete)
    say(
        "done",
        deleted=sum(1 for s in statuses if s == 204),
        statuses=sorted(set(statuses)),
        teardown_s=time.perf_counter() - started,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="hold many idle tunnels open")
    parser.add_argument("--port", type=int, required=True, help="the relay's public port")
    parser.add_argument("--tunnels", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(run(args.port, args.tunnels, args.concurrency))


if __name__ == "__main__":
    main()
