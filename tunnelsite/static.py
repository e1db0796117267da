"""WhiteNoise for the admin's static files, read without blocking the relay's event loop.

WhiteNoise's middleware is synchronous and hands Django an open file to stream. Under ASGI
Django warns about such a response ("must consume synchronous iterators") and reads it whole;
here the file is read in a worker thread one block at a time and streamed as it is read.
Django closes the file when the response ends (FileResponse registers it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

# Read static files in blocks of this size: the largest admin file (~300 KB) in a few reads.
BLOCK_BYTES = 64 * 1024

_next_block = sync_to_async(next, thread_sensitive=False)


async def _read_in_thread(blocks: Iterator[bytes]) -> AsyncIterator[bytes]:
    while block := await _next_block(blocks, b""):
        yield block


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    @staticmethod
    def serve(static_file: Any, request: HttpRequest) -> HttpResponse:
        response = WhiteNoiseMiddleware.serve(static_file, request)
        response.block_size = BLOCK_BYTES
        response.streaming_content = _read_in_thread(iter(response.streaming_content))
        return response
