"""A raw TCP app for TCP tunnels' benchmark and tests: one command line, then bytes.

    python -m bench.tcp_app [--port 0]      prints "tcp app listening on 127.0.0.1:<port>"

A connection starts with one line, then:
    SEND <n>   the app sends n bytes of bench.payload's pattern, then a FIN, and reads on
               until the visitor's FIN (a download).
    SINK       the app reads until the visitor's FIN, then answers "<count> <sha256>\\n" of
               what it read, computed after the EOF, and closes (an upload; half-close).
    ECHO       every byte back, as it comes, until the visitor's FIN; then a FIN.
    STATS      "<bytes sent by SEND so far> <connections so far>\\n" (what a never-reading
               visitor let through, for the memory test).
Every write waits for the socket (drain): the app never buffers more than one chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys

from bench import payload

READ_BYTES = 64 * 1024
COMMAND_BYTES = 64  # the longest command line ("SEND <n>")
COMMAND_TIMEOUT_S = 30.0  # a connection that never says what it wants is closed


class Counters:
    sent = 0
    connections = 0


async def _send(writer: asyncio.StreamWriter, count: int) -> None:
    for piece in payload.chunks(count):
        for start in range(0, len(piece), READ_BYTES):
            writer.write(piece[start : start + READ_BYTES])
            await writer.drain()
            Counters.sent += min(READ_BYTES, len(piece) - start)
    writer.write_eof()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    digest, count = hashlib.sha256(), 0
    while data := await reader.read(READ_BYTES):
        digest.update(data)
        count += len(data)
    writer.write(f"{count} {digest.hexdigest()}\n".encode())
    await writer.drain()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(READ_BYTES):
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    Counters.connections += 1
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            line = await reader.readuntil(b"\n")
        words = line[:COMMAND_BYTES].decode("ascii", "replace").split()
        if words[:1] == ["SEND"] and len(words) == 2 and words[1].isdigit():
            await _send(writer, int(words[1]))
            while await reader.read(READ_BYTES):  # until the visitor is done too
                pass
        elif words == ["SINK"]:
            await _sink(reader, writer)
        elif words == ["ECHO"]:
            await _echo(reader, writer)
        elif words == ["STATS"]:
            writer.write(f"{Counters.sent} {Counters.connections}\n".encode())
            await writer.drain()
        else:
            writer.write(b"unknown command\n")
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # the visitor left or broke the rules: nothing to answer
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"tcp app listening on 127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    try:
        asyncio.run(main(parser.parse_args().port))
    except KeyboardInterrupt:
        sys.exit(0)
