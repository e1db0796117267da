"""Per-address limits on the bare domain's visitor pages (sign-in attempts, abuse reports): a
fixed window per address in Django's cache (per process; LocMemCache culls old keys, so it
stays bounded). An IPv6 address counts as its network (RELAY_IPV6_PREFIX), as registrations do.
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


# Sign-in: enough for typos, too few to guess passwords (Django's hashers are slow too).
SIGNIN = Rule("throttle:signin", limit=10, window_s=300)
# Abuse reports: a person reports a few tunnels; a script filling the admin is stopped.
REPORT = Rule("throttle:report", limit=5, window_s=600)


def take(rule: Rule, ip: str) -> int:
    """Spend one attempt of `ip` under `rule`: 0 when allowed, else whole seconds to wait
    (nothing spent)."""
    key = f"{rule.prefix}:{address_key(ip, settings.RELAY_IPV6_PREFIX)}"
    now = time.time()
    start, count = cache.get(key, (now, 0))
    if now - start >= rule.window_s:
        start, count = now, 0
    if count >= rule.limit:
        return max(1, math.ceil(start + rule.window_s - now))
    cache.set(key, (start, count + 1), timeout=math.ceil(start + rule.window_s - now) + 1)
    return 0
