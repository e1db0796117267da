"""The device authorization's rows (RFC 8628; the model is `DeviceAuthorization`): making a
code pair, reading a typed user code, the user's decision, and lt's poll. No HTTP here:
tunnels/device.py is the views.

The device code is lt's bearer secret while it polls: only its SHA-256 is stored, and the
row is found by that digest (an index lookup on a 256-bit value; the digest is compared
again with `hmac.compare_digest`). The user code is what a person types: 8 letters of
`relay.protocol.DEVICE_USER_CODE_ALPHABET`, stored without its dash, unique among the
rows still waiting. The token is made when lt collects it, once (a conditional UPDATE picks
the one poll that does), so no token secret is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from relay import protocol
from tunnels import throttle
from tunnels.models import ApiToken, DeviceAuthorization, Suspension
from tunnels.plain_text import plain

# Device codes asked for per client address: lt asks once per `lt login`; a script filling
# the table (every row holds a user code out of the pending space) is stopped.
CODE_REQUESTS = throttle.Rule("throttle:device-code", limit=20, window_s=600)
# Wrong user codes typed (posted) per signed-in user: enough for typos; against 20^8 codes,
# guessing a pending one at this pace takes centuries.
WRONG_CODES = throttle.Rule("throttle:device-guess", limit=10, window_s=600)
# The same per address, ten times higher: an office or a school behind one NAT address is
# many users, and one colleague's 10 typos (or a guesser's) must not lock the others out of
# approving. Still a bound on accounts made to guess in turn: 100 guesses per 10 min at
# 20^8 codes is as hopeless as 10.
WRONG_CODES_PER_ADDRESS = throttle.Rule("throttle:device-guess-ip", limit=100, window_s=600)
# Wrong codes followed by link (GET ?code=) per signed-in user. Apart from WRONG_CODES: any
# page can make a browser GET such links, and that must not lock the user out of approving.
# Past it a link only fills the form in (nothing looked up, so GET is no free oracle either).
WRONG_LINKS = throttle.Rule("throttle:device-link", limit=20, window_s=600)
# Expired rows deleted in passing, at most this many per new code: the table stays small
# without a sweeper, and no request pays for a large delete.
EXPIRED_BATCH = 100
# Rows are kept this long past expiry, so that lt, still polling, hears expired_token
# rather than invalid_grant, and a user following an old link hears "expired".
KEEP_EXPIRED = timedelta(hours=1)
# A poll this much earlier than the interval still counts as on time: lt waits `interval`
# after each answer, and the relay's clock reads its own handling, not lt's send.
POLL_GRACE_S = 0.2
# Attempts at a user code not taken by a pending row (20^8 codes: a clash is rare).
USER_CODE_ATTEMPTS = 10


def device_digest(device_code: str) -> str:
    return hashlib.sha256(device_code.encode("utf-8", "replace")).hexdigest()


def shown(user_code: str) -> str:
    """`BCDFGHJK` -> `BCDF-GHJK`: the form people read and type."""
    half = len(user_code) // 2
    return f"{user_code[:half]}-{user_code[half:]}"


def normalise(typed: str) -> str | None:
    """A typed user code in stored form (any case, dashes and spaces ignored), or None when
    it cannot be one."""
    text = "".join(ch for ch in typed.upper() if ch not in "- \t")
    if len(text) != protocol.DEVICE_USER_CODE_LENGTH:
        return None
    if any(ch not in protocol.DEVICE_USER_CODE_ALPHABET for ch in text):
        return None
    return text


def _new_user_code() -> str:
    alphabet = protocol.DEVICE_USER_CODE_ALPHABET
    return "".join(secrets.choice(alphabet) for _ in range(protocol.DEVICE_USER_CODE_LENGTH))


def delete_expired() -> int:
    """Delete up to EXPIRED_BATCH rows expired longer than KEEP_EXPIRED ago."""
    cutoff = timezone.now() - KEEP_EXPIRED
    ids = list(
        DeviceAuthorization.objects.filter(expires__lt=cutoff).values_list("pk", flat=True)[
            :EXPIRED_BATCH
        ]
    )
    if not ids:
        return 0
    deleted, _ = DeviceAuthorization.objects.filter(pk__in=ids).delete()
    return deleted


def start(device_name: str, client_version: str, client_ip: str) -> tuple[DeviceAuthorization, str]:
    """A new pending row and its device code (the only time the code exists in clear)."""
    delete_expired()
    now = timezone.now()
    device_code = secrets.token_urlsafe(protocol.DEVICE_CODE_BYTES)
    pending = DeviceAuthorization.objects.filter(state=DeviceAuthorization.PENDING, expires__gt=now)
    for _ in range(USER_CODE_ATTEMPTS):
        user_code = _new_user_code()
        if not pending.filter(user_code=user_code).exists():
            break
    else:  # 10 clashes in a row: the table is full of someone's codes
        raise RuntimeError("no free user code")
    row = DeviceAuthorization.objects.create(
        device_digest=device_digest(device_code),
        user_code=user_code,
        device_name=plain(device_name)[: protocol.DEVICE_NAME_MAX_CHARS],
        client_version=plain(client_version)[: protocol.DEVICE_VERSION_MAX_CHARS],
        client_ip=client_ip,
        expires=now + timedelta(seconds=settings.DEVICE_CODE_TTL_S),
        interval_s=settings.DEVICE_POLL_INTERVAL_S,
    )
    return row, device_code


def find(user_code: str) -> DeviceAuthorization | None:
    """The newest row with this (normalised) user code: pending, or expired or used (the
    page then says so)."""
    return DeviceAuthorization.objects.filter(user_code=user_code).order_by("-created").first()


def is_open(row: DeviceAuthorization) -> bool:
    """Waiting for a user, and not expired."""
    return row.state == DeviceAuthorization.PENDING and row.expires > timezone.now()


def is_suspended(user: AbstractBaseUser) -> bool:
    return Suspension.objects.active().filter(kind=Suspension.USER, user_id=user.pk).exists()


def decide(row: DeviceAuthorization, user: AbstractBaseUser, approve: bool) -> bool:
    """Record `user`'s decision on a pending row; False when it was no longer pending (or
    expired) by then. The token will be `user`'s: whoever types the code approves it for
    themselves (RFC 8628 section 5.4: the code names the device, not the account)."""
    state = DeviceAuthorization.APPROVED if approve else DeviceAuthorization.DENIED
    changed = DeviceAuthorization.objects.filter(
        pk=row.pk, state=DeviceAuthorization.PENDING, expires__gt=timezone.now()
    ).update(state=state, user=user)
    return changed == 1


@dataclass(frozen=True)
class Poll:
    """lt's poll answered: `error` (an RFC 8628 error code) or a token."""

    error: str = ""
    message: str = ""
    interval_s: int = 0
    token: str = ""
    name: str = ""


def token_name(row: DeviceAuthorization) -> str:
    """`lt on <device name> (lt <version>)`, within the token name's 100 characters."""
    version = f" (lt {row.client_version})" if row.client_version else ""
    room = ApiToken._meta.get_field("name").max_length or 0
    device = (row.device_name or "a device")[: room - len("lt on ") - len(version)]
    return f"lt on {device}{version}"


def poll(device_code: str) -> Poll:
    """One poll by lt with its device code."""
    digest = device_digest(device_code)
    row = DeviceAuthorization.objects.filter(device_digest=digest).first()
    if row is None or not hmac.compare_digest(row.device_digest, digest):
        return Poll(
            "invalid_grant", "This device code is unknown to the relay: run lt login again."
        )
    now = timezone.now()
    if row.state == DeviceAuthorization.DONE:
        return Poll(
            "invalid_grant", "This device code was used already: its token was handed out once."
        )
    if row.state == DeviceAuthorization.DENIED:
        return Poll(protocol.DEVICE_DENIED, "The sign-in was denied on the account page.")
    if row.expires <= now:
        return Poll(
            protocol.DEVICE_EXPIRED,
            "The code expired before it was approved: run lt login again.",
        )
    if row.state == DeviceAuthorization.APPROVED:
        return _collect(row)
    since = (now - row.last_poll).total_seconds() if row.last_poll else None
    if since is not None and since < row.interval_s - POLL_GRACE_S:
        row.interval_s += protocol.DEVICE_SLOW_DOWN_STEP_S
        row.last_poll = now
        row.save(update_fields=["interval_s", "last_poll"])
        return Poll(
            protocol.DEVICE_SLOW_DOWN,
            f"Polled too fast: wait {row.interval_s} s between polls.",
            row.interval_s,
        )
    row.last_poll = now
    row.save(update_fields=["last_poll"])
    return Poll(
        protocol.DEVICE_PENDING, "Waiting for the user to approve.", interval_s=row.interval_s
    )


def _collect(row: DeviceAuthorization) -> Poll:
    """The approved row's token, made once: of concurrent polls, only the one whose UPDATE
    changes the row makes it."""
    user = row.user
    if user is None or not user.is_active or is_suspended(user):
        DeviceAuthorization.objects.filter(pk=row.pk).update(state=DeviceAuthorization.DENIED)
        return Poll(
            protocol.DEVICE_DENIED,
            "The account that approved this sign-in may no longer use the relay.",
        )
    with transaction.atomic():
        taken = DeviceAuthorization.objects.filter(
            pk=row.pk, state=DeviceAuthorization.APPROVED
        ).update(state=DeviceAuthorization.DONE)
        if taken != 1:
            return Poll(
                "invalid_grant",
                "This device code was used already: its token was handed out once.",
            )
        token, text = ApiToken.issue(user, name=token_name(row))
        DeviceAuthorization.objects.filter(pk=row.pk).update(token=token)
    return Poll(token=text, name=token.name)
