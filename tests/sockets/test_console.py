"""relay/run/console.py on real pipes: a write never blocks or raises, and a gap is announced."""

from __future__ import annotations

import fcntl
import os
import time

from harness.waiting import wait_until

from relay.run.console import ConsoleStream


def test_writes_to_a_pipe_nobody_reads_return_at_once_and_the_gap_is_announced():
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
        stream = ConsoleStream(write_end, "test", limit=8192)
        line = "x" * 99 + "\n"
        started = time.monotonic()
        for _ in range(1000):  # 100 KB into 4 KiB of pipe and 8 KiB of buffer
            stream.write(line)
        assert time.monotonic() - started < 1.0
        assert stream.dropped > 0

        received = bytearray()
        os.set_blocking(read_end, False)

        def read_some() -> bytearray:
            try:
                received.extend(os.read(read_end, 65536))
            except BlockingIOError:
                pass
            return received

        # The reader catches up: what was buffered goes out, then what is written next.
        wait_until(lambda: read_some() and stream.drain(0), 5, "the buffer to go out")
        stream.write("the end\n")
        wait_until(lambda: read_some().endswith(b"the end\n"), 5, "the last line")
        _, note, rest = bytes(received).partition(b" lines of output dropped: nobody was")
        assert note, "no note about the dropped lines"
        assert rest.endswith(b" reading them]\nthe end\n")  # the gap is just before this line
    finally:
        os.close(read_end)
        os.close(write_end)


def test_writes_after_the_reader_is_gone_never_raise():
    read_end, write_end = os.pipe()
    stream = ConsoleStream(write_end, "test")
    os.close(read_end)
    try:
        for _ in range(100):
            assert stream.write("nobody hears this\n") == len("nobody hears this\n")
        stream.flush()
        wait_until(lambda: stream.broken, 5, "the stream to notice EPIPE")
        assert stream.drain(0.1)
    finally:
        os.close(write_end)
