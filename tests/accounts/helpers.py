"""Shared pieces for the accounts tests: users, tokens, plans and a registry per test."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from django.contrib.auth.models import User

from relay.pool.registry import Registry, get_registry, reset_registry
from tunnels.models import ApiToken

NPM_USER_AGENT = "axios/0.21.4"


def make_user(username: str, **extra: Any) -> User:
    return User.objects.create_user(username=username, password="pw-for-tests-only", **extra)


def make_token(user: User, name: str = "laptop", **extra: Any) -> tuple[ApiToken, str]:
    return ApiToken.issue(user, name=name, **extra)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(username: str, password: str = "") -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@contextlib.asynccontextmanager
async def fresh_registry() -> AsyncIterator[Registry]:
    """A registry bound to this test's event loop, with every tunnel closed at the end."""
    reset_registry()
    try:
        yield get_registry()
    finally:
        await get_registry().shutdown()
        reset_registry()
