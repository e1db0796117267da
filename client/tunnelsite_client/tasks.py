"""Ending a helper task without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait for it to end. Its own error is dropped (the caller has acted
    on it, or no longer cares); a cancellation of the caller is not."""
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        pass
