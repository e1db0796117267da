"""What registering a TCP tunnel (`lt tcp`, protocol.TCP_KIND_HEADER) adds to registering an
HTTP one (tunnels/registration.py): checks of the request before any database work
(`read_ask`), then, in the same database call as the token's (`grant_registration`), the
plan, the operator's visitor policy, the port asked for, the ports a random one may not be
(reserved, or quarantined for their owners) and the port this name had, which become the
relay.face.TcpAsk the relay registers with."""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.http import HttpRequest

from relay import protocol
from relay.face import TcpAsk, VisitorRules
from tunnels import auth, tcp_ports
from tunnels.access import ClientRules, Policy
from tunnels.models import TunnelSession, VisitorPolicy

OFF = "This relay does not offer TCP tunnels (its operator has not set RELAY_TCP_PORTS)."
ANONYMOUS = (
    "TCP tunnels need an account on this relay: run `lt login --host URL` (or pass --token "
    "TOKEN, made on the relay's account page, /account/), then run `lt tcp` again."
)
HTTP_ONLY = (
    "A TCP tunnel cannot ask for passwords (--basic-auth) or team-only visitors (--private): "
    "a TCP visitor has no browser to sign in with or to show a warning page to. A TCP "
    "tunnel's visitor rules are only --cidr-allow and --cidr-deny."
)
FORCED_AUTH = (
    "requires its tunnels' visitors to sign in or give a password, which a TCP tunnel cannot "
    "ask for (a TCP visitor has no browser)"
)


@dataclasses.dataclass(frozen=True)
class Ask:
    """A TCP registration as the request states it, checked before any database work."""

    port: int  # the port asked for (--remote-port); 0: any free one


def wants_tcp(request: HttpRequest) -> bool:
    """The client asks for a TCP tunnel, or sends a TCP header at all (read_ask judges it)."""
    return (
        protocol.TCP_KIND_HEADER in request.headers
        or protocol.TCP_REMOTE_PORT_HEADER in request.headers
    )


def read_ask(request: HttpRequest, client_rules: ClientRules, *, anonymous: bool) -> Ask:
    """The TCP headers and what needs no database; raises auth.Refusal with the answer."""
    kind = request.headers.get(protocol.TCP_KIND_HEADER, "").strip().lower()
    if not kind:
        raise auth.Refusal(
            400,
            f"{protocol.TCP_REMOTE_PORT_HEADER} is for TCP tunnels only: send "
            f"{protocol.TCP_KIND_HEADER}: {protocol.TCP_KIND} with it (`lt tcp`).",
        )
    if kind != protocol.TCP_KIND:
        raise auth.Refusal(
            400,
            f"{protocol.TCP_KIND_HEADER} must be {protocol.TCP_KIND!r} (a TCP tunnel), not "
            f"{kind[:20]!r}; leave it out for an HTTP tunnel.",
        )
    if tcp_ports.port_range() is None:
        raise auth.Refusal(403, OFF)
    try:
        port = tcp_ports.parse_remote_port(request.headers.get(protocol.TCP_REMOTE_PORT_HEADER))
    except tcp_ports.BadPort as exc:
        raise auth.Refusal(400, exc.message) from None
    if client_rules.basic_auth or client_rules.private:
        raise auth.Refusal(400, HTTP_ONLY)
    if anonymous and not settings.RELAY_TCP_ANONYMOUS:
        raise auth.Refusal(401, ANONYMOUS)
    return Ask(port=port)


def grant_registration(
    credential: str | None, ip: str, requested: str | None, ask: Ask
) -> tuple[auth.Grant, TcpAsk]:
    """auth.grant_registration and what a TCP tunnel needs of the database, in one call."""
    grant = auth.grant_registration(credential, ip, requested)
    limits = grant.limits
    if not limits.allow_tcp:
        raise auth.Refusal(
            403,
            f"Your plan ({limits.plan}) does not include TCP tunnels; ask the relay's "
            "operator for a plan that does.",
        )
    if _forces_auth(grant.plan_policy):
        raise auth.Refusal(
            403, f"Your plan ({limits.plan}) {FORCED_AUTH}; ask the operator for another plan."
        )
    if _forces_auth(grant.name_policy):
        raise auth.Refusal(
            403,
            f"The reserved name {requested!r} {FORCED_AUTH}; open the TCP tunnel under "
            "another name (or leave out --subdomain).",
        )
    if ask.port and not tcp_ports.is_reserved_for(ask.port, grant.user_id):
        raise auth.Refusal(
            403,
            f"Port {ask.port} is not reserved for you; an operator reserves ports in the "
            "admin. Leave out --remote-port for any free port.",
        )
    _check_cluster_count(grant, requested)
    if ask.port:  # reserved for this user (checked above): the relay gives it or refuses
        return grant, TcpAsk(
            port=ask.port,
            reserved=tcp_ports.reserved_for_others(grant.user_id),
            max_live=limits.max_tcp_tunnels,
        )
    # A random port is never a reserved one (the user's own only when asked for) nor one
    # another owner's tunnel had within the quarantine; the one this name had is tried first.
    never = tcp_ports.all_reserved() | tcp_ports.quarantined_for(grant.user_id, ip)
    back = tcp_ports.given_back(grant.user_id, requested)
    return grant, TcpAsk(
        reserved=never,
        max_live=limits.max_tcp_tunnels,
        preferred=0 if back in never else back,
    )


def _forces_auth(policy: Policy | None) -> bool:
    return policy is not None and policy.visitor_auth in (
        VisitorPolicy.AUTH_REQUIRED,
        VisitorPolicy.AUTH_TEAM,
    )


def _check_cluster_count(grant: auth.Grant, requested: str | None) -> None:
    """scale-out: the user's live TCP tunnels on every node (each node's relay counts only
    its own), from the live session rows; a reclaim of the same name does not count."""
    limit = grant.limits.max_tcp_tunnels
    if not (settings.RELAY_NODE_NAME and limit and grant.user_id is not None):
        return
    live = TunnelSession.objects.filter(
        is_live=True, owner_id=grant.user_id, tcp_port__isnull=False
    )
    if requested is not None:
        live = live.exclude(subdomain=requested)
    if live.count() >= limit:
        raise auth.Refusal(
            429,
            f"You already have {limit} live TCP tunnel{'s' if limit != 1 else ''}, the most "
            f"your plan ({grant.limits.plan}) allows. Close one (stop its lt tcp) first.",
        )


def visitor_rules(rules: VisitorRules) -> VisitorRules:
    """A TCP tunnel's rules: its networks only. The warning page, even one the operator
    forces, cannot apply: there is no page to show a TCP visitor."""
    return dataclasses.replace(rules, warning=False)
