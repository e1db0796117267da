"""Limits on the bare domain's visitor pages: failed sign-ins (both sign-in forms) and abuse
reports per address, team tickets per user. A fixed window per key in Django's cache (per
process; LocMemCache culls old keys, so it stays bounded). An IPv6 address counts as its
network (RELAY_IPV6_PREFIX), as registrations do.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from relay.face import address_key


@dataclass(frozen=True)
class Rule:
    prefix: str
    limit: int  # attempts per window
    window_s: int


# Failed sign-ins (the relay's and the admin's forms together): enough for typos, too few to
# guess passwords (Django's hashers are slow too). Successful ones spend nothing, so an
# office behind one NAT is not locked out by its own people signing in.
SIGNIN = Rule("throttle:signin", limit=10, window_s=300)
# Team tickets issued per user (/visit/): a person opens a few team-only tunnels a minute; a
# script minting tickets in a loop is stopped.
TICKET = Rule("throttle:ticket", limit=30, window_s=60)
# Abuse reports: a person reports a few tunnels; a script filling the admin is stopped.
REPORT = Rule("throttle:report", limit=5, window_s=600)


def by_address(ip: str) -> str:
    return address_key(ip, settings.RELAY_IPV6_PREFIX)


def _window(rule: Rule, who: str, now: float) -> tuple[str, float, int]:
    key = f"{rule.prefix}:{who}"
    start, count = cache.get(key, (now, 0))
    if now - start >= rule.window_s:
        start, count = now, 0
    return key, start, count


def wait_s(rule: Rule, who: str) -> int:
    """0 when `who` (by_address(ip), or a user's key) may try now, else whole seconds to
    wait; spends nothing."""
    now = time.time()
    _, start, count = _window(rule, who, now)
    return max(1, math.ceil(start + rule.window_s - now)) if count >= rule.limit else 0


def spend(rule: Rule, who: str) -> None:
    """Count one attempt of `who` under `rule`."""
    now = time.time()
    key, start, count = _window(rule, who, now)
    cache.set(key, (start, count + 1), timeout=math.ceil(start + rule.window_s - now) + 1)


def take_for(rule: Rule, who: str) -> int:
    """Spend one attempt of `who`: 0 when allowed, else whole seconds to wait (nothing
    spent)."""
    if waited := wait_s(rule, who):
        return waited
    spend(rule, who)
    return 0


def take(rule: Rule, ip: str) -> int:
    """take_for by address."""
    return take_for(rule, by_address(ip))
