"""The site's middleware chain runs in Django's sync mode from end to end (docs/architecture.md,
the site's requests): one hop to the request's thread, not two per middleware."""

from __future__ import annotations

from types import FunctionType
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync
from django.conf import settings

from tunnelsite.site_threads import SiteHandler


def middlewares(handler: SiteHandler) -> list[Any]:
    """The middleware instances of the handler's chain, outermost first, unwrapped from
    Django's exception wrappers and asgiref's adapters."""
    found: list[Any] = []
    node: Any = handler._middleware_chain
    for _ in range(10 * len(settings.MIDDLEWARE)):
        if isinstance(node, SyncToAsync):
            node = node.func
        elif isinstance(node, AsyncToSync):
            node = node.awaitable
        elif isinstance(node, FunctionType) and node.__closure__:  # Django's wrapper
            (node,) = [c.cell_contents for c in node.__closure__ if callable(c.cell_contents)]
        elif hasattr(node, "get_response"):
            found.append(node)
            node = node.get_response
        else:
            break
    return found


def test_every_middleware_runs_in_sync_mode():
    chain = middlewares(SiteHandler())

    assert [f"{type(m).__module__}.{type(m).__name__}" for m in chain] == settings.MIDDLEWARE
    assert [m for m in chain if getattr(m, "async_mode", False)] == []
