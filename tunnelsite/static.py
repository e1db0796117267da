"""WhiteNoise for the admin's static files, read without blocking the relay's event loop.

WhiteNoise's middleware is synchronous and hands Django an open file to stream. Under ASGI
Django would warn about such a response ("must consume synchronous iterators") and read it
whole; here the file is read in a worker thread, one block at a time, up to the response's
Content-Length: the last block is followed by the end of the response at once, with no
extra read (a visitor that closes as soon as it has every byte would otherwise leave Django
waiting on one more read, and log an aborted request).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from whitenoise.middleware import WhiteNoiseFileResponse, WhiteNoiseMiddleware

# Read static files in blocks of this size: the largest admin file (~300 KB) in a few reads.
BLOCK_BYTES = 64 * 1024


def _read_block(file: IO[bytes], size: int) -> bytes:
    return file.read(size)


_read_in_thread = sync_to_async(_read_block, thread_sensitive=False)


async def _blocks(file: IO[bytes], length: int | None) -> AsyncIterator[bytes]:
    try:
        left = length
        while left is None or left > 0:
            block = await _read_in_thread(
                file, BLOCK_BYTES if left is None else min(left, BLOCK_BYTES)
            )
            if not block:
                return
            if left is not None:
                left -= len(block)
            yield block
    finally:
        file.close()


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing (HEAD, 304)


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    def add_files(self, root: str, prefix: str | None = None) -> None:
        """WhiteNoise's, but STATIC_ROOT is served only in production, where runrelay has
        collected it (manifest storage) before serving. While developing (and in tests) files
        come from the apps' folders: a STATIC_ROOT left over from a production run would be
        stale, one never collected drew a warning, and one being collected by another process
        at that moment was read half-written (a FileNotFoundError at start)."""
        if os.path.abspath(root) == os.path.abspath(settings.STATIC_ROOT):
            collected = "Manifest" in settings.STORAGES["staticfiles"]["BACKEND"]
            if not collected or not os.path.isdir(root):
                return
            # Another relay may be collecting into it right now (runrelay holds an exclusive
            # flock on the folder while it does): read it under a shared one, never mid-way.
            folder = os.open(root, os.O_RDONLY)
            try:
                fcntl.flock(folder, fcntl.LOCK_SH)
                super().add_files(root, prefix)
            finally:
                os.close(folder)
            return
        super().add_files(root, prefix)

    @staticmethod
    def serve(static_file: Any, request: HttpRequest) -> WhiteNoiseFileResponse:
        """WhiteNoise's own `serve`, with the body streamed as described above."""
        response = static_file.get_response(request.method, request.META)
        headers = dict(response.headers)
        length = headers.get("Content-Length")
        body = (
            _blocks(response.file, int(length) if length else None)
            if response.file is not None
            else _no_body()
        )
        http_response = WhiteNoiseFileResponse(body, status=int(response.status))
        del http_response["content-type"]
        for key, value in response.headers:
            http_response[key] = value
        return http_response
