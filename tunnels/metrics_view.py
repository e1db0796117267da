"""`GET /metrics` on the bare domain: the relay's metrics for Prometheus, behind a bearer token.

Answered only with `Authorization: Bearer <RELAY_METRICS_TOKEN>` (compared in constant
time); a missing or wrong token gets 401 with WWW-Authenticate, and a token in the URL is
never read (URLs end up in logs and histories). Without RELAY_METRICS_TOKEN the path says how
to turn metrics on (404). A tunnel's host never reaches Django, so never this view. The
exposition itself is the relay's (relay.face.metrics_text, relay/metrics.py). RELAY_METRICS_BIND
serves the same without a token on a listener of its own (relay/run/metrics_listener.py).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from relay import face
from tunnels import quiet

OFF = (
    "Metrics are not served on this relay's site: set RELAY_METRICS_TOKEN and send "
    "`Authorization: Bearer <that token>`, or set RELAY_METRICS_BIND for a listener of "
    "their own (docs/metrics.md)."
)


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


@csrf_exempt  # it changes nothing: another method gets the 405 below, not a CSRF page
async def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        refused = JsonResponse({"message": "Use GET /metrics."}, status=405)
        refused["Allow"] = "GET, HEAD"
        return quiet.unlogged(refused)
    token: str = settings.RELAY_METRICS_TOKEN
    if not token:
        return quiet.unlogged(JsonResponse({"message": OFF}, status=404))
    given = _bearer(request)
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        return _refused(request)
    body, content_type = face.metrics_text()
    answer = HttpResponse(body, content_type=content_type)
    answer["Cache-Control"] = "no-store"
    return answer
