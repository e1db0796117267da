"""The request inspector's JSON (relay.protocol.INSPECT_PATH): the owner's view of a tunnel's
kept exchanges, and replay. Its page is tunnels/inspector.py.

Who may: the tunnel's owner, signed in (a session, which sees all their tunnels; a replay
then needs Django's CSRF token, as X-CSRFToken), or with the API token the tunnel was opened
with (`Authorization: Bearer lt_...`: a token reads only its own tunnels, so a token given
to one machine does not show another's traffic); staff too when RELAY_INSPECT_STAFF. A
token used here shows in its last_used (tunnels/auth.py, throttled). Anyone else is told
there is no such tunnel, as when there is none: the answer never says who owns what. On a
cluster another node forwards these calls here, to the tunnel's owner node
(relay/cluster/hop.py), which checks the caller itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from relay import face
from relay.protocol import inspect_edits_max_bytes
from tunnels import auth, quiet, request_json
from tunnels.identity import identify

_OFF = (
    "Inspection is off for this tunnel: its plan (or this relay) keeps none of its "
    "requests, for privacy. An operator can turn it on in the plan (inspect requests)."
)


def _error(status: int, message: str) -> JsonResponse:
    """A refusal (401, 404, 400, 413...), which anyone can cause at will: no log line each
    (tunnels/quiet.py)."""
    return quiet.unlogged(JsonResponse({"message": message}, status=status))


def _no_tunnel(name: str) -> JsonResponse:
    return _error(404, f"There is no live tunnel called {name!r} of yours on this relay.")


@dataclass(frozen=True)
class Caller:
    user_id: int
    staff: bool
    token_id: int | None = None  # a token caller's: it sees only tunnels opened with it

    @property
    def bearer(self) -> bool:  # a token, not a session: no CSRF token needed
        return self.token_id is not None


def _token_caller(credential: str, ip: str) -> Caller | auth.Refusal:
    try:
        grant = auth.authenticate(credential, ip)  # touches last_used (throttled)
    except auth.Refusal as exc:
        return exc
    if grant.user_id is None or grant.token_id is None:
        return auth.Refusal(401, "That API token is not valid.")
    staff = get_user_model().objects.filter(pk=grant.user_id, is_staff=True).exists()
    return Caller(grant.user_id, staff, grant.token_id)


async def _caller(request: HttpRequest) -> Caller | JsonResponse:
    requester = identify(request)
    if requester.credential is not None:
        found = await face.database_call(_token_caller, requester.credential, requester.ip)
        if isinstance(found, auth.Refusal):
            return _error(found.status, found.message)
        return found
    user = await request.auser()
    if not user.is_authenticated or not user.is_active:
        return _error(
            401,
            "Sign in on the account page, or send one of your API tokens as "
            "`Authorization: Bearer lt_...`.",
        )
    return Caller(int(user.pk), user.is_staff)


async def _allowed(request: HttpRequest, name: str) -> Caller | JsonResponse:
    """The caller when they may see `name`'s captures; else the JSON error to answer."""
    caller = await _caller(request)
    if isinstance(caller, JsonResponse):
        return caller
    tunnel = face.tunnel_status(name)
    if tunnel is None:
        return _no_tunnel(name)
    owner = tunnel.user_id is not None and tunnel.user_id == caller.user_id
    if caller.bearer and tunnel.token_id != caller.token_id:
        owner = False  # a token sees the tunnels opened with it, not all of its user's
    if not owner and not (caller.staff and settings.RELAY_INSPECT_STAFF):
        return _no_tunnel(name)  # the same answer as for no tunnel: who owns what is private
    return caller


@csrf_exempt  # a Bearer caller needs none; a session's replay is checked below
async def list_captures(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "GET":
        return _error(405, "Use GET to list a tunnel's requests.")
    allowed = await _allowed(request, name)
    if isinstance(allowed, JsonResponse):
        return allowed
    try:
        after = int(request.GET.get("after", "0"))
    except ValueError:
        return _error(400, "after must be a request id (a whole number).")
    found = face.captures(name, after)
    if found is None:
        return _error(409, _OFF)
    return _json({"requests": found})


@csrf_exempt
async def capture_detail(request: HttpRequest, name: str, capture_id: int) -> HttpResponse:
    if request.method != "GET":
        return _error(405, "Use GET to read a request.")
    allowed = await _allowed(request, name)
    if isinstance(allowed, JsonResponse):
        return allowed
    if not face.inspecting(name):
        return _error(409, _OFF)
    found = face.capture(name, capture_id)
    if found is None:
        return _error(
            404, "There is no such request (the relay keeps only the latest ones, in memory)."
        )
    return _json(found)


@csrf_exempt
async def replay(request: HttpRequest, name: str, capture_id: int) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "Use POST to replay a request.")
    allowed = await _allowed(request, name)
    if isinstance(allowed, JsonResponse):
        return allowed
    too_big = _too_big(request)
    if too_big is not None:
        return too_big
    if not allowed.bearer:
        refused = CsrfViewMiddleware(_unused).process_view(request, _unused, (), {})
        if refused is not None:
            return _error(
                403,
                "The CSRF token is missing or wrong: send the page's csrftoken cookie's "
                "value as X-CSRFToken (or use an API token as Authorization: Bearer).",
            )
    if not face.inspecting(name):
        return _error(409, _OFF)
    edits = _edits(request)
    if isinstance(edits, JsonResponse):
        return edits
    try:
        answer = await face.replay(name, capture_id, edits)
    except face.ReplayError as exc:
        refusal = _error(exc.status, exc.message)
        if exc.retry_after is not None:  # too many replays at once, the plan's rate, no socket
            refusal["Retry-After"] = str(exc.retry_after)
        return refusal
    return _json(answer)


def _max_edits_bytes() -> int:
    return inspect_edits_max_bytes(
        settings.RELAY_INSPECT_BODY_BYTES, settings.RELAY_MAX_HEADER_BYTES
    )


def _too_big_answer() -> JsonResponse:
    return _error(413, f"The edits may be at most {_max_edits_bytes()} bytes of JSON.")


def _too_big(request: HttpRequest) -> JsonResponse | None:
    """413 when the declared body is past what edits may take (before anything reads it)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "The Content-Length is not a number.")
    return _too_big_answer() if declared > _max_edits_bytes() else None


def _edits(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    try:
        body = request.body
    except RequestDataTooBig:  # past DATA_UPLOAD_MAX_MEMORY_SIZE: Django's own bound
        return _too_big_answer()
    if len(body) > _max_edits_bytes():
        return _too_big_answer()
    if not body:
        return {}
    try:
        edits = request_json.loads(body, max_bytes=_max_edits_bytes())
    except request_json.BadJson as exc:
        return _error(
            400,
            f"The body must be a JSON object: {{method, path, headers, body_b64}} ({exc.reason}).",
        )
    if not isinstance(edits, dict):
        return _error(400, "The body must be a JSON object: {method, path, headers, body_b64}.")
    return edits


def _json(data: dict[str, Any]) -> JsonResponse:
    answer = JsonResponse(data)
    answer["Cache-Control"] = "no-store"  # others' traffic: never in a shared cache
    return answer


def _unused(request: HttpRequest) -> HttpResponse:
    return HttpResponse()  # CsrfViewMiddleware's get_response; process_view never calls it
