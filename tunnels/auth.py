"""Who may open which tunnel: token resolution and the registration rules that need the ORM.

`grant_registration` runs once per registration on the relay's database threads
(`face.database_call`, relay/database.py), never per request. The rules that depend on live
tunnels (how many the owner has, whether the name is taken) are checked by the view against
the in-memory registry.

Owner keys: a token holder's tunnels belong to `user:<id>`, so any of that user's tokens may
reclaim or close them; an anonymous tunnel belongs to `ip:<addr>`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from relay import protocol
from relay.face import address_key
from tunnels import tokens
from tunnels.access import Policy
from tunnels.models import ApiToken, ReservedSubdomain, Suspension
from tunnels.plans import PlanLimits, default_limits, limits_of, plan_of

logger = logging.getLogger(__name__)

HOW_TO_PASS = (
    "Pass it as `lt --token TOKEN` (tunnelsite's lt), `lt --host <scheme>://TOKEN@<relay>` "
    "(the npm client) or in an `Authorization: Bearer TOKEN` header."
)
# Where a user gets a token of their own: the account page, or lt's browser sign-in (the
# operator is no longer the only way; docs/account.md).
MAKE_ONE = "make one on the relay's account page (/account/) or run `lt login --host URL`"


class Refusal(Exception):
    """A registration that is not allowed; `status` and `message` go to the client."""

    def __init__(self, status: int, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason  # protocol.REFUSAL_* for our lt's exit code, or ""


@dataclass(frozen=True)
class Grant:
    owner: str
    limits: PlanLimits
    user_id: int | None = None
    token_id: int | None = None
    username: str = ""  # the token's user ("" anonymous): the warning page names the owner
    # The operator's visitor policy (tunnels/access.py), read in the same call: the plan's
    # (None: the default plan, which has none) and the requested reserved name's.
    plan_policy: Policy | None = None
    name_policy: Policy | None = None

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


def owner_key(user_id: int) -> str:
    return f"user:{user_id}"


def anonymous_owner(ip: str) -> str:
    """The owner key of an anonymous tunnel: its address, an IPv6 one as its network
    (RELAY_IPV6_PREFIX), so one /64 is one owner for the live-tunnel and rate limits."""
    return f"ip:{address_key(ip, settings.RELAY_IPV6_PREFIX)}"


def authenticate(credential: str | None, ip: str, *, touch: bool = True) -> Grant:
    """The grant for a token (or for no token); raises Refusal(401) when it will not do."""
    if credential is None:
        if settings.RELAY_ALLOW_ANONYMOUS:
            return Grant(owner=anonymous_owner(ip), limits=default_limits())
        raise Refusal(401, f"This relay needs an API token: {MAKE_ONE}. {HOW_TO_PASS}")
    # A token that was sent but is wrong is refused even when anonymous use is allowed:
    # falling back silently would hide the mistake.
    token = _lookup(credential)
    now = timezone.now()
    if token is None:
        raise Refusal(
            401,
            "That API token is not valid. Check that you copied all of it (it starts with "
            f"`lt_`), or {MAKE_ONE}. {HOW_TO_PASS}",
        )
    if token.revoked:
        raise Refusal(401, f"That API token has been revoked: {MAKE_ONE}.")
    if token.is_expired(now):
        raise Refusal(401, f"That API token has expired: {MAKE_ONE}.")
    if not token.user.is_active:
        raise Refusal(401, "The account of that API token is disabled; contact the operator.")
    if touch and (
        token.last_used is None
        or now - token.last_used >= timedelta(seconds=protocol.TOKEN_TOUCH_INTERVAL_S)
    ):  # throttled: a token in use shows, without a write per request
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    plan = plan_of(token)
    return Grant(
        owner=owner_key(token.user_id),
        limits=limits_of(plan),
        user_id=token.user_id,
        token_id=token.pk,
        username=token.user.get_username(),
        plan_policy=Policy.of(plan),
    )


ANOTHER_KEY = (
    "That API token was created under a different SECRET_KEY than this relay's (for example "
    "by `manage.py createtoken` run without the relay's environment), so the relay cannot "
    "check it. Create it again with the relay's settings (the same SECRET_KEY or "
    f"SECRET_KEY_FILE), or {MAKE_ONE}."
)


def _lookup(credential: str) -> ApiToken | None:
    parts = tokens.split(credential)
    if parts is None:
        return None
    prefix, secret = parts
    token = ApiToken.objects.select_related("user", "plan").filter(prefix=prefix).first()
    if token is None:
        tokens.digest(secret)  # spend the same time as a real comparison
        return None
    if not tokens.matches(secret, token.digest):
        ours = tokens.key_fingerprint()
        if token.key_fingerprint and token.key_fingerprint != ours:
            logger.warning(
                "refused API token lt_%s...: it was created under a different SECRET_KEY "
                "(key fingerprint %s; this relay's is %s). Run createtoken with the relay's "
                "environment, or give the relay the key the token was made with.",
                token.prefix,
                token.key_fingerprint,
                ours,
            )
            raise Refusal(401, ANOTHER_KEY)
        return None
    return token


def tokens_under_another_key() -> int:
    """How many usable tokens were made under another SECRET_KEY than this process's."""
    return (
        ApiToken.objects.usable()
        .exclude(key_fingerprint="")
        .exclude(key_fingerprint=tokens.key_fingerprint())
        .count()
    )


def check_name(grant: Grant, name: str) -> ReservedSubdomain | None:
    """Refuse (403) a custom name the plan does not allow, or a name reserved for another;
    the user's own ReservedSubdomain row, if the name is one (its visitor policy applies).

    A ReservedSubdomain row given to the user wins over both: the operator chose to.
    """
    row = ReservedSubdomain.objects.filter(name=name).first()
    if row is not None and grant.user_id is not None and row.user_id == grant.user_id:
        return row
    if not grant.limits.allow_custom_subdomains:
        raise Refusal(
            403,
            f"Your plan ({grant.limits.plan}) does not include choosing a subdomain. "
            "Leave out --subdomain to get a random name.",
        )
    if row is not None or name in settings.RELAY_RESERVED_NAMES:
        raise Refusal(
            403,
            f"The subdomain {name!r} is reserved. Pick another name, or leave out "
            "--subdomain for a random one.",
        )
    return None


def grant_registration(credential: str | None, ip: str, requested: str | None) -> Grant:
    """Everything about a registration the database decides, in one call."""
    grant = authenticate(credential, ip)
    check_suspended(grant, requested)
    if requested is not None and (reserved := check_name(grant, requested)) is not None:
        grant = replace(grant, name_policy=Policy.of(reserved))
    return grant


def check_suspended(grant: Grant, requested: str | None) -> None:
    """Refuse (403, protocol.REFUSAL_SUSPENDED) a suspended name, token or user: from the
    database, so a suspension holds across restarts and on every node."""
    if requested is None and grant.user_id is None:
        return  # an anonymous random name: nothing to look up
    which = Q(pk__in=[])
    if requested is not None:
        which |= Q(kind=Suspension.NAME, name=requested)
    if grant.token_id is not None:
        which |= Q(kind=Suspension.TOKEN, token_id=grant.token_id)
    if grant.user_id is not None:
        which |= Q(kind=Suspension.USER, user_id=grant.user_id)
    row = Suspension.objects.active().filter(which).order_by("-created").first()
    if row is None:
        return
    what = {
        Suspension.NAME: f"The tunnel name {requested}",
        Suspension.TOKEN: "That API token",
        Suspension.USER: "Your account",
    }[row.kind]
    raise Refusal(
        protocol.SUSPENDED_STATUS,
        f"{what} is suspended by the relay's operator: {row.reason}",
        reason=protocol.REFUSAL_SUSPENDED,
    )
