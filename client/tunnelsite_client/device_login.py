"""`lt login --host URL` without a token: the device authorization of RFC 8628.

lt asks the relay for a device code and a short user code (`POST /api/device/code`), prints
where to approve it and the code, opens the browser there, and polls `POST
/api/device/token` every `interval` seconds (slower after a `slow_down`) until the user
approves (a token comes back, once), denies, or the code expires. Network errors while
polling are asked again until that deadline. The same names as relay/protocol.py's
DEVICE_* (the client imports no server code).

The device code is lt's secret while it polls: never printed. The token is returned to the
caller, which saves it as `lt login --token` does (cli.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

import h11

from .connect import RelayConnector
from .http import NO_ANSWER, Answer, describe_error, request, split_userinfo
from .limits import (
    DEVICE_MAX_INTERVAL_S,
    DEVICE_MAX_WAIT_S,
    DEVICE_MIN_INTERVAL_S,
    DEVICE_REQUEST_TIMEOUT_S,
    DEVICE_SHOWN_CHARS,
    DEVICE_SLOW_DOWN_STEP_S,
)
from .printable import printable
from .redact import redact_url

CODE_PATH = "/api/device/code"
TOKEN_PATH = "/api/device/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
PENDING = "authorization_pending"
SLOW_DOWN = "slow_down"
DENIED = "access_denied"
EXPIRED = "expired_token"
# Answers to a poll that say "not now" rather than "no": the relay is busy or restarting.
_ASK_AGAIN = {HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.BAD_GATEWAY}
_ASK_AGAIN |= {HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.GATEWAY_TIMEOUT}
# Asking for a code: a relay without the flow (an older tunnelsite, the localtunnel server).
_UNSUPPORTED = {HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED}


class DeviceLoginError(Exception):
    """The login did not happen; `kind` says why (cli.py maps it to an exit code)."""

    DENIED = "denied"
    EXPIRED = "expired"
    UNSUPPORTED = "unsupported"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"  # any other answer; `status` is the HTTP status (0: none)

    def __init__(self, kind: str, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


@dataclass(frozen=True)
class DeviceCode:
    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class Granted:
    token: str = field(repr=False)
    name: str


def shown(text: str) -> str:
    """What the relay sent, fit for a terminal (printable.py), cut short: a code or a name."""
    return printable(text, DEVICE_SHOWN_CHARS)


def _base(host: str) -> str:
    bare, _ = split_userinfo(host)
    return bare.rstrip("/")


def _headers(user_agent: str) -> dict[str, str]:
    return {
        "User-Agent": user_agent,
        "Accept": "application/json",
        "Content-Type": "application/json",
    }


def _json(answer: Answer) -> dict[str, object]:
    try:
        data = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _message(data: Mapping[str, object], status: int) -> str:
    message = data.get("message")
    return shown(str(message)) if message else f"the relay answered HTTP {status}"


def _http_url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return shown(value)


def _seconds(value: object, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(low, min(high, int(value)))


def parse_code(body: dict[str, object]) -> DeviceCode:
    """The relay's answer to the code request, checked; DeviceLoginError when unusable."""
    device_code, user_code = body.get("device_code"), body.get("user_code")
    uri = _http_url(body.get("verification_uri"))
    complete = _http_url(body.get("verification_uri_complete")) or uri
    expires_in = _seconds(body.get("expires_in"), DEVICE_MIN_INTERVAL_S, DEVICE_MAX_WAIT_S)
    interval = _seconds(
        body.get("interval", DEVICE_SLOW_DOWN_STEP_S), DEVICE_MIN_INTERVAL_S, DEVICE_MAX_INTERVAL_S
    )
    if not (isinstance(device_code, str) and device_code and isinstance(user_code, str)):
        raise DeviceLoginError(DeviceLoginError.REFUSED, "the relay's answer has no codes")
    if uri is None or complete is None or expires_in is None or interval is None:
        raise DeviceLoginError(
            DeviceLoginError.REFUSED, "the relay's answer is not a device authorization"
        )
    return DeviceCode(device_code, shown(user_code), uri, complete, expires_in, interval)


async def _post(
    host: str,
    path: str,
    fields: dict[str, str],
    connector: RelayConnector,
    user_agent: str,
    timeout_s: float,
) -> Answer:
    body = json.dumps(fields).encode()
    url = _base(host) + path
    return await request("POST", url, _headers(user_agent), timeout_s, connector, body=body)


async def ask_code(
    host: str, connector: RelayConnector, name: str, version: str, user_agent: str
) -> DeviceCode:
    """POST the code request; DeviceLoginError when the relay cannot or will not."""
    fields = {"client_name": name, "client_version": version}
    try:
        answer = await _post(
            host, CODE_PATH, fields, connector, user_agent, DEVICE_REQUEST_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        raise DeviceLoginError(DeviceLoginError.UNREACHABLE, describe_error(exc)) from exc
    except h11.ProtocolError as exc:  # not an HTTP server
        raise DeviceLoginError(
            DeviceLoginError.UNREACHABLE, f"bad answer from the relay: {exc}"
        ) from exc
    data = _json(answer)
    if answer.status in _UNSUPPORTED:
        raise DeviceLoginError(
            DeviceLoginError.UNSUPPORTED,
            f"the relay at {redact_url(_base(host))} does not offer `lt login` in the browser "
            f"(HTTP {answer.status}); ask its operator for a token and run "
            "lt login --host URL --token TOKEN",
            answer.status,
        )
    if answer.status != HTTPStatus.OK:
        raise DeviceLoginError(
            DeviceLoginError.REFUSED, _message(data, answer.status), answer.status
        )
    return parse_code(data)


async def poll_token(
    host: str,
    connector: RelayConnector,
    code: DeviceCode,
    user_agent: str,
) -> Granted:
    """Poll until the token comes, the user denies, or the code expires (a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + code.expires_in
    interval = code.interval
    fields = {"device_code": code.device_code, "grant_type": GRANT_TYPE}
    while True:
        left = deadline - loop.time()
        if left <= 0:
            break
        await asyncio.sleep(min(interval, left))
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            answer = await _post(
                host,
                TOKEN_PATH,
                fields,
                connector,
                user_agent,
                min(DEVICE_REQUEST_TIMEOUT_S, left),
            )
        except NO_ANSWER as exc:
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise DeviceLoginError(DeviceLoginError.UNREACHABLE, describe_error(exc)) from exc
            continue  # a cut connection or a half answer: the network comes back, or the
            # deadline ends it. Anything else is a bug in lt and is not retried in silence.
        data = _json(answer)
        if answer.status == HTTPStatus.OK:
            token, name = data.get("access_token"), data.get("name")
            if not isinstance(token, str) or not token:
                raise DeviceLoginError(
                    DeviceLoginError.REFUSED, "the relay's answer has no token", answer.status
                )
            return Granted(token, shown(str(name or "")))
        if answer.status in _ASK_AGAIN or answer.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            continue
        error = data.get("error")
        if error == PENDING:
            continue
        if error == SLOW_DOWN:
            interval = min(DEVICE_MAX_INTERVAL_S, interval + DEVICE_SLOW_DOWN_STEP_S)
            continue
        if error == DENIED:
            raise DeviceLoginError(
                DeviceLoginError.DENIED,
                shown(str(data.get("message") or ""))
                or "the sign-in was denied on the account page",
                answer.status,
            )
        if error == EXPIRED:
            break
        raise DeviceLoginError(
            DeviceLoginError.REFUSED, _message(data, answer.status), answer.status
        )
    raise DeviceLoginError(
        DeviceLoginError.EXPIRED,
        "the code expired before it was approved; run lt login again for a new one",
    )


def may_open_browser(environ: Mapping[str, str]) -> bool:
    """Whether opening a browser can work: on Linux without a display (an SSH session, a
    server), Python's webbrowser would start a text browser in this terminal, if any."""
    if environ.get("BROWSER"):
        return True
    if sys.platform.startswith("linux"):
        return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
    return True


async def open_browser(url: str) -> bool:
    """Open `url` in the user's browser (BROWSER, else the platform's); False on failure."""
    try:
        return await asyncio.to_thread(webbrowser.open, url)
    except (webbrowser.Error, OSError):
        return False


def device_name() -> str:
    """What the account page calls this device: its host name."""
    return socket.gethostname()


async def login_in_browser(
    host: str,
    connector: RelayConnector,
    version: str,
    user_agent: str,
    say: Callable[[str], None],
    *,
    browser: bool,
    environ: Mapping[str, str],
) -> Granted:
    """The whole flow: the code, what to do with it (`say`), the browser, the polls."""
    code = await ask_code(host, connector, device_name(), version, user_agent)
    say(f"To sign in, open {code.verification_uri} and enter the code: {code.user_code}")
    say(f"  (or open {code.verification_uri_complete})")
    if browser and may_open_browser(environ) and await open_browser(code.verification_uri_complete):
        say("Opened your browser. Waiting for the approval (Ctrl-C to stop) ...")
    elif browser:
        say("Could not open a browser here: open the URL above on any device.")
        say("Waiting for the approval (Ctrl-C to stop) ...")
    else:
        say("Waiting for the approval (Ctrl-C to stop) ...")
    return await poll_token(host, connector, code, user_agent)
