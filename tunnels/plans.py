"""Plans as the relay applies them: a frozen `PlanLimits` per tunnel, read once at registration."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from tunnels.models import Account, ApiToken, Plan


@dataclass(frozen=True)
class PlanLimits:
    plan: str
    max_live_tunnels: int  # per owner; 0: no limit
    max_sockets: int  # advertised as max_conn_count and enforced by the pool
    max_requests_per_minute: int  # per account (all its tunnels, every node); 0: no limit
    max_bytes_per_day: int  # in + out, per account, per UTC day; 0: no limit
    max_request_body_bytes: int  # 0: no limit
    idle_timeout_s: int  # 0: never
    allow_custom_subdomains: bool
    max_reserved_names: int = 0  # names the user may reserve on the account page; 0: none
    inspect: bool = False  # the relay keeps the tunnel's last requests for its owner
    allow_tcp: bool = False  # TCP tunnels (`lt tcp`) on a relay that offers them
    max_tcp_tunnels: int = 0  # live TCP tunnels per user; 0: no limit
    max_bytes_per_second: int = 0  # per owner on each relay, each direction; 0: no limit

    @classmethod
    def from_plan(cls, plan: Plan) -> PlanLimits:
        return cls(
            plan=plan.name,
            max_live_tunnels=plan.max_live_tunnels,
            max_sockets=max(1, plan.max_sockets_per_tunnel),
            max_requests_per_minute=plan.max_requests_per_minute,
            max_bytes_per_day=plan.max_bytes_per_day,
            max_request_body_bytes=plan.max_request_body_bytes,
            idle_timeout_s=plan.idle_timeout_s,
            allow_custom_subdomains=plan.allow_custom_subdomains,
            max_reserved_names=plan.max_reserved_names,
            inspect=plan.inspect_requests,
            allow_tcp=plan.allow_tcp,
            max_tcp_tunnels=plan.max_tcp_tunnels,
            max_bytes_per_second=plan.max_bytes_per_second,
        )


def default_limits() -> PlanLimits:
    """The plan of users without one and of anonymous tunnels (RELAY_DEFAULT_PLAN_*)."""
    return PlanLimits(
        plan="default",
        max_live_tunnels=settings.RELAY_DEFAULT_PLAN_MAX_LIVE_TUNNELS,
        max_sockets=settings.RELAY_DEFAULT_PLAN_MAX_SOCKETS,
        max_requests_per_minute=settings.RELAY_DEFAULT_PLAN_MAX_REQUESTS_PER_MINUTE,
        max_bytes_per_day=settings.RELAY_DEFAULT_PLAN_MAX_BYTES_PER_DAY,
        max_request_body_bytes=settings.RELAY_DEFAULT_PLAN_MAX_REQUEST_BODY_BYTES,
        idle_timeout_s=settings.RELAY_DEFAULT_PLAN_IDLE_TIMEOUT_S,
        allow_custom_subdomains=settings.RELAY_DEFAULT_PLAN_ALLOW_CUSTOM_SUBDOMAINS,
        max_reserved_names=settings.RELAY_DEFAULT_PLAN_MAX_RESERVED_NAMES,
        inspect=settings.RELAY_DEFAULT_PLAN_INSPECT,
        allow_tcp=settings.RELAY_DEFAULT_PLAN_TCP,
        max_tcp_tunnels=settings.RELAY_DEFAULT_PLAN_MAX_TCP_TUNNELS,
        max_bytes_per_second=settings.RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND,
    )


def limits_of(plan: Plan | None) -> PlanLimits:
    """A plan's limits; None is the default plan."""
    return default_limits() if plan is None else PlanLimits.from_plan(plan)


def _user_plan(user_id: int | None) -> Plan | None:
    if user_id is None:
        return None
    account = Account.objects.filter(user_id=user_id).select_related("plan").first()
    return None if account is None else account.plan


def plan_of(token: ApiToken) -> Plan | None:
    """The token's own plan, else its user's, else None (the default plan: settings only)."""
    return token.plan if token.plan is not None else _user_plan(token.user_id)


def limits_for(user_id: int | None, token_id: int | None = None) -> PlanLimits:
    """The limits the relay applies (tunnels/auth.py's rule): the token's own plan, else the
    user's, else the default plan (also for anonymous tunnels, `user_id` None)."""
    if token_id is not None:
        token = ApiToken.objects.filter(pk=token_id).select_related("plan").first()
        if token is not None and token.plan is not None:
            return PlanLimits.from_plan(token.plan)
    return limits_of(_user_plan(user_id))
