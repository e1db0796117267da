"""`GET /metrics` on the bare domain: the relay's metrics for Prometheus, behind a bearer token.

Answered only with `Authorization: Bearer <RELAY_METRICS_TOKEN>` (compared in constant
time); a missing or wrong token gets 401 with WWW-Authenticate, and a token in the URL is
never read (URLs end up in logs and histories). Each refusal is logged (event
`metrics_refused`, rationed as refused registrations are: tunnels/refusal_log.py), and an
address past METRICS_FAILURES_PER_ADDRESS refusals in a window gets 429 until the window ends,
its token not compared (`Failures`, relay/protocol.py says why). Without RELAY_METRICS_TOKEN
the path says how to turn metrics on (404). A tunnel's host never reaches Django, so never
this view. The exposition itself is the relay's (relay.face.metrics_text, relay/metrics.py).
RELAY_METRICS_BIND serves the same without a token on a listener of its own
(relay/run/metrics_listener.py).
"""

from __future__ import annotations

import hmac
import logging
import math
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from relay import face
from relay.protocol import (
    METRICS_FAILURE_ADDRESSES_KEPT,
    METRICS_FAILURE_WINDOW_S,
    METRICS_FAILURES_PER_ADDRESS,
)
from tunnels import quiet
from tunnels.refusal_log import Ration

logger = logging.getLogger("tunnels.metrics")

OFF = (
    "Metrics are not served on this relay's site: set RELAY_METRICS_TOKEN and send "
    "`Authorization: Bearer <that token>`, or set RELAY_METRICS_BIND for a listener of "
    "their own (docs/metrics.md)."
)


class Failures:
    """Refused metrics tokens per client address, in fixed windows (sans-IO: told the time).

    `held(address, now)`: the seconds until `address` may try again (0: now). `failed`
    counts one refusal. The table holds only addresses that failed in this window, at most
    `kept` of them; it is emptied when the window ends."""

    def __init__(
        self,
        per_address: int = METRICS_FAILURES_PER_ADDRESS,
        window_s: float = METRICS_FAILURE_WINDOW_S,
        kept: int = METRICS_FAILURE_ADDRESSES_KEPT,
    ) -> None:
        self.per_address, self.window_s, self.kept = per_address, window_s, kept
        self.window_end = float("-inf")  # the current window ends then (monotonic seconds)
        self.by_address: dict[str, int] = {}

    def _roll(self, now: float) -> None:
        if now >= self.window_end:
            self.window_end = now + self.window_s
            self.by_address.clear()

    def held(self, address: str, now: float) -> float:
        """Positive while the window lasts (now < window_end), at most the window's length."""
        self._roll(now)
        if self.by_address.get(address, 0) < self.per_address:
            return 0.0
        return min(self.window_end - now, self.window_s)

    def failed(self, address: str, now: float) -> None:
        self._roll(now)
        count = self.by_address.get(address)
        if count is not None:
            self.by_address[address] = count + 1
        elif len(self.by_address) < self.kept:
            self.by_address[address] = 1


_failures = Failures()
_ration = Ration()  # which refusals get a log line


def _log_refusal(ip: str, reason: str, now: float) -> None:
    left_out = _ration.admit(ip, now)
    if left_out is None:
        return
    fields = {"event": "metrics_refused", "reason": reason, "client_ip": ip, "left_out": left_out}
    logger.warning("/metrics refused for %s: %s", ip, reason.replace("_", " "), extra=fields)


def _bearer(request: HttpRequest) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _refused(request: HttpRequest) -> JsonResponse:
    message = "Send the metrics token as `Authorization: Bearer <RELAY_METRICS_TOKEN>`."
    if request.META.get("QUERY_STRING"):
        message += " A token in the URL is never read: URLs end up in logs."
    answer = JsonResponse({"message": message}, status=401)
    answer["WWW-Authenticate"] = 'Bearer realm="tunnelsite metrics"'
    answer["Cache-Control"] = "no-store"
    return quiet.unlogged(answer)  # anyone can cause one: no log line each


def _address(request: HttpRequest) -> str:
    scope = getattr(request, "scope", None)
    return face.client_ip(scope) if scope is not None else request.META.get("REMOTE_ADDR", "")


def _held(wait_s: int) -> JsonResponse:
    message = (
        f"Too many wrong or missing metrics tokens from your address; try again in {wait_s} s "
        "with `Authorization: Bearer <RELAY_METRICS_TOKEN>`."
    )
    answer = JsonResponse({"message": message}, status=429)
    answer["Retry-After"] = str(wait_s)
    answer["Cache-Control"] = "no-store"
    return quiet.unlogged(answer)


@csrf_exempt  # it changes nothing: another method gets the 405 below, not a CSRF page
async def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        refused = JsonResponse({"message": "Use GET /metrics."}, status=405)
        refused["Allow"] = "GET, HEAD"
        return quiet.unlogged(refused)
    token: str = settings.RELAY_METRICS_TOKEN
    if not token:
        return quiet.unlogged(JsonResponse({"message": OFF}, status=404))
    ip, now = _address(request), time.monotonic()
    wait = _failures.held(ip, now)
    if wait:
        _log_refusal(ip, "too_many_failures", now)
        return _held(math.ceil(wait))
    given = _bearer(request)
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        _failures.failed(ip, now)
        _log_refusal(ip, "wrong_token" if given else "no_token", now)
        return _refused(request)
    body, content_type = face.metrics_text()
    answer = HttpResponse(body, content_type=content_type)
    answer["Cache-Control"] = "no-store"
    return answer
