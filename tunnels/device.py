"""`lt login` in the browser: device authorization (RFC 8628; the wire in relay/protocol.py's
"`lt login` in the browser", the rows in tunnels/device_codes.py).

- `POST /api/device/code` (lt): a device code and a user code, where to approve them.
- `POST /api/device/token` (lt, every `interval` s): RFC 8628's errors, then the token once.
- `/account/device/` (a signed-in user): type or follow the code, see which device asks,
  approve or deny.

The two API views are CSRF-exempt (lt is not a browser, and nothing a web page could send
them acts for a signed-in user); the page's decisions are POSTs with Django's CSRF check.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from relay import protocol
from tunnels import addresses, device_codes, quiet, request_json, throttle
from tunnels.identity import identify
from tunnels.models import DeviceAuthorization

FORM_TYPE = "application/x-www-form-urlencoded"
CODE_PARAM = "code"
# lt's JSON bodies are two short fields (a device name and a version, or a device code and
# the grant type): a few hundred bytes. Anything past this is not lt.
MAX_JSON_BYTES = 16 * 1024


def _error(status: int, message: str, error: str = "", **extra: Any) -> JsonResponse:
    body: dict[str, Any] = {"message": message, **extra}
    if error:
        body["error"] = error
    answer = JsonResponse(body, status=status)
    answer["Cache-Control"] = "no-store"
    return answer


def _fields(request: HttpRequest) -> dict[str, str] | None:
    """The request's fields, from a JSON object or a form; None when the body is neither."""
    kind = request.content_type or ""
    if kind == "application/json":
        try:
            data = request_json.loads(request.body or b"{}", max_bytes=MAX_JSON_BYTES)
        except request_json.BadJson:
            return None
        if not isinstance(data, dict):
            return None
        return {str(k): v for k, v in data.items() if isinstance(v, str)}
    if kind in (FORM_TYPE, "multipart/form-data", "") or not request.body:
        return {k: str(v) for k, v in request.POST.items()}
    return None


def _verify_url(request: HttpRequest) -> str:
    """The bare domain's DEVICE_VERIFY_PATH, absolute, as the relay's public URLs are built."""
    return addresses.relay_url(request) + protocol.DEVICE_VERIFY_PATH


def _post_only(request: HttpRequest, message: str) -> HttpResponse | None:
    """lt's calls are POSTs: anything else gets `message` (405, with Allow)."""
    if request.method == "POST":
        return None
    answer = _error(405, message)
    answer["Allow"] = "POST"
    return answer


@csrf_exempt
def code(request: HttpRequest) -> HttpResponse:
    """POST /api/device/code {client_name, client_version}: a new pair of codes."""
    if refusal := _post_only(request, "Use POST to ask for a device code (lt login does)."):
        return refusal
    ip = identify(request).ip
    if waited := throttle.take(device_codes.CODE_REQUESTS, ip):
        answer = _error(
            429,
            f"Too many device codes asked for from your address: try again in {waited} s.",
        )
        answer["Retry-After"] = str(waited)
        return answer
    fields = _fields(request)
    if fields is None:
        return _error(400, "Send a JSON object or a form: client_name, client_version.")
    try:
        row, device_code = device_codes.start(
            fields.get("client_name", "").strip(), fields.get("client_version", "").strip(), ip
        )
    except RuntimeError:
        return _error(503, "The relay has no free user code right now: try again in a minute.")
    verify = _verify_url(request)
    user_code = device_codes.shown(row.user_code)
    answer = JsonResponse(
        {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verify,
            "verification_uri_complete": f"{verify}?{CODE_PARAM}={user_code}",
            "expires_in": settings.DEVICE_CODE_TTL_S,
            "interval": row.interval_s,
        }
    )
    answer["Cache-Control"] = "no-store"
    return answer


@csrf_exempt
def token(request: HttpRequest) -> HttpResponse:
    """POST /api/device/token {device_code, grant_type}: RFC 8628 section 3.4's answers."""
    if refusal := _post_only(request, "Use POST to poll for the token (lt login does)."):
        return refusal
    fields = _fields(request)
    if fields is None:
        return _error(400, "Send a JSON object or a form.", "invalid_request")
    if fields.get("grant_type") != protocol.DEVICE_GRANT_TYPE:
        return _error(
            400,
            f"grant_type must be {protocol.DEVICE_GRANT_TYPE}.",
            "unsupported_grant_type",
        )
    device_code = fields.get("device_code", "")
    if not device_code:
        return _error(400, "device_code is missing.", "invalid_request")
    polled = device_codes.poll(device_code)
    if polled.error:
        extra = {"interval": polled.interval_s} if polled.interval_s else {}
        answer = _error(400, polled.message, polled.error, **extra)
        if polled.error == protocol.DEVICE_PENDING:
            # "Not yet" is the protocol's normal answer, every 5 s while the user reads the
            # page (tunnels/quiet.py). The other errors are logged as usual.
            quiet.unlogged(answer)
        return answer
    answer = JsonResponse(
        {"access_token": polled.token, "token_type": "Bearer", "name": polled.name}
    )
    answer["Cache-Control"] = "no-store"
    answer["Pragma"] = "no-cache"
    return answer


def _page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    status: int = 200,
) -> HttpResponse:
    answer = render(request, template, context, status=status)
    answer["Cache-Control"] = "no-store"
    # The code may be in the URL: no other site sees it in a Referer. Not "no-referrer":
    # Chromium then sends `Origin: null` with the form, which Django's CSRF check refuses.
    answer["Referrer-Policy"] = "same-origin"
    return answer


def _form(
    request: HttpRequest, status: int = 200, problem: str = "", typed: str = ""
) -> HttpResponse:
    return _page(
        request,
        "tunnels/account/device.html",
        {"problem": problem, "typed": typed[: protocol.DEVICE_USER_CODE_LENGTH * 2]},
        status,
    )


def _wrong_code(request: HttpRequest, typed: str) -> HttpResponse:
    """A code that names no pending device. Counted per user and per address only when it
    was typed (POST): any page can make a signed-in browser GET `?code=` (an <img> on a
    tunnel, which is same-site), and counting that would lock the user out of approving."""
    if request.method == "POST":
        throttle.spend(device_codes.WRONG_CODES, f"user:{request.user.pk}")
        throttle.spend(
            device_codes.WRONG_CODES_PER_ADDRESS, throttle.by_address(identify(request).ip)
        )
    else:
        throttle.spend(device_codes.WRONG_LINKS, f"user:{request.user.pk}")
    return _form(
        request,
        404,
        "That code is not one the relay is waiting for. Check it against the code lt printed "
        "(8 letters, like BCDF-GHJK) and type it again.",
        typed,
    )


def _limited(request: HttpRequest) -> int:
    """Seconds to wait when this user or address typed too many wrong codes, else 0."""
    return max(
        throttle.wait_s(device_codes.WRONG_CODES, f"user:{request.user.pk}"),
        throttle.wait_s(
            device_codes.WRONG_CODES_PER_ADDRESS, throttle.by_address(identify(request).ip)
        ),
    )


def _row_page(
    request: HttpRequest, typed: str
) -> tuple[DeviceAuthorization | None, HttpResponse | None]:
    """The pending row for the code `typed`, or the page to show instead."""
    if waited := _limited(request):
        answer = _form(
            request,
            429,
            f"Too many wrong codes from your account or address: try again in {waited} seconds.",
        )
        answer["Retry-After"] = str(waited)
        return None, answer
    user_code = device_codes.normalise(typed)
    row = device_codes.find(user_code) if user_code else None
    if row is None:
        return None, _wrong_code(request, typed)
    if row.state != DeviceAuthorization.PENDING:
        return None, _page(
            request,
            "tunnels/account/device_closed.html",
            {
                "title": "This code was used already",
                "message": "Someone approved or denied this sign-in already. If it was not you, "
                "revoke the token it made on your account page. To sign lt in, run lt login "
                "again for a new code.",
            },
            410,
        )
    if not device_codes.is_open(row):
        return None, _page(
            request,
            "tunnels/account/device_closed.html",
            {
                "title": "This code has expired",
                "message": "The code was not approved in time. Run lt login again: it prints "
                "a new code.",
            },
            410,
        )
    return row, None


@never_cache
@login_required
def verify(request: HttpRequest) -> HttpResponse:
    """GET: the form to type the code, or with ?code= (lt's link) the device to approve.
    POST (CSRF): a typed code (the device to approve), or code + decision ("approve" or
    "deny"). Only posted wrong codes count towards WRONG_CODES."""
    if request.method not in ("GET", "HEAD", "POST"):
        return _form(request, 405, "Use the form on this page.")
    user = request.user
    if not user.is_active or device_codes.is_suspended(user):
        return _page(
            request,
            "tunnels/account/device_closed.html",
            {
                "title": "Your account may not sign lt in",
                "message": "The relay's operator has suspended your account, so it cannot "
                "approve a sign-in. Ask the operator why.",
            },
            403,
        )
    source = request.POST if request.method == "POST" else request.GET
    typed = source.get(CODE_PARAM, "").strip()
    if not typed:
        return _form(request)
    if request.method != "POST" and throttle.wait_s(device_codes.WRONG_LINKS, f"user:{user.pk}"):
        return _form(request, problem="Check the code and press Continue.", typed=typed)
    row, refusal = _row_page(request, typed)
    if refusal is not None or row is None:
        return refusal or _form(request)
    if request.method != "POST":
        return _page(
            request,
            "tunnels/account/device.html",
            {"row": row, "user_code": device_codes.shown(row.user_code)},
        )
    decision = request.POST.get("decision")
    if decision is None:  # a code typed in the form: the device to approve
        return _page(
            request,
            "tunnels/account/device.html",
            {"row": row, "user_code": device_codes.shown(row.user_code)},
        )
    if decision not in ("approve", "deny"):
        return _form(request, 400, "Press Approve or Deny.", typed)
    approve = decision == "approve"
    if not device_codes.decide(row, user, approve):
        return _page(
            request,
            "tunnels/account/device_closed.html",
            {
                "title": "This code is no longer waiting",
                "message": "It expired, or was approved or denied in another tab. Run lt "
                "login again for a new code.",
            },
            410,
        )
    template = "device_done.html" if approve else "device_denied.html"
    return _page(request, f"tunnels/account/{template}", {"row": row})
