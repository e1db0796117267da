"""WhiteNoise for the admin's static files, read without blocking the relay's event loop.

WhiteNoise's middleware is synchronous. Under ASGI Django would run it on a thread of each
request's own, and the rest of the request (every middleware and view after it) from that
thread back on the loop: a thread and two hops for every page and every registration. This
one is asynchronous too: a request for anything but a static file passes through on the loop,
with no thread. A static file is looked up (while developing, on disk) and opened on a
worker thread.

WhiteNoise hands Django an open file to stream. Under ASGI
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

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseFileResponse, WhiteNoiseMiddleware

# Read static files in blocks of this size: the largest admin file (~300 KB) in a few reads.
BLOCK_BYTES = 64 * 1024


def _read_block(file: IO[bytes], size: int) -> bytes:
    return file.read(size)


_read_in_thread = sync_to_async(_read_block, thread_sensitive=False)


def _off_the_loop(fn: Any) -> Any:
    return sync_to_async(fn, thread_sensitive=False)


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
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any, settings: Any = settings) -> None:
        super().__init__(get_response, settings)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path_info
        if self.autorefresh:  # while developing: looked up on disk, where it may be
            if self._may_find(path):
                static_file = await _off_the_loop(self.find_file)(path)
            else:
                static_file = None
        else:
            static_file = self.files.get(path)
        if static_file is not None:
            return await _off_the_loop(self.serve)(static_file, request)
        return await self.get_response(request)

    def _may_find(self, path: str) -> bool:
        """Whether `find_file` could find anything at `path`: it looks under the app
        folders' prefix (finders) and each added folder's (WhiteNoise's
        candidate_paths_for_url)."""
        if self.use_finders and path.startswith(self.static_prefix):
            return True
        return any(path.startswith(prefix) for _, prefix in self.directories)

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
