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
    max_requests_per_minute: int  # per tunnel; 0: no limit
    max_bytes_per_day: int  # in + out, per tunnel; 0: no limit
    max_request_body_bytes: int  # 0: no limit
    idle_timeout_s: int  # 0: never
    allow_custom_subdomains: bool
    max_reserved_names: int = 0  # names the user may reserve on the account page; 0: none
    inspect: bool = False  # the relay keeps the tunnel's last requests for its owner

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
    )


def plan_of(token: ApiToken) -> Plan | None:
    """The token's own plan, else its user's, else None (the default plan: settings only)."""
    if token.plan is not None:
        return token.plan
    account = Account.objects.filter(user_id=token.user_id).select_related("plan").first()
    return None if account is None else account.plan
