"""Who is on a tunnel owner's team: who may visit a team-only tunnel (lt --private, or a
plan's or reserved name's policy). One rule for the bare domain's sign-in (tunnels/signin.py)
and for a visitor's Bearer token (tunnels/records.py, asked by the relay and cached there)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group

from tunnels import auth
from tunnels.models import Suspension


def may_visit(user: AbstractBaseUser | AnonymousUser, owner_user_id: int) -> bool:
    """The owner, staff, and active users who share a Django group with the owner; never a
    user an operator suspended (the owner and staff neither)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if Suspension.objects.active().filter(kind=Suspension.USER, user_id=user.pk).exists():
        return False
    if user.pk == owner_user_id or getattr(user, "is_staff", False):
        return True
    return Group.objects.filter(user__id=user.pk).filter(user__id=owner_user_id).exists()


def team_member(credential: str, owner_user_id: int) -> int | None:
    """The id of the user whose usable API token `credential` is, when that user may visit
    `owner_user_id`'s team-only tunnels; None otherwise (a wrong, revoked, expired or
    suspended token too)."""
    try:
        grant = auth.authenticate(credential, "", touch=False)
    except auth.Refusal:
        return None
    if grant.user_id is None or grant.token_id is None:
        return None
    if Suspension.objects.active().filter(kind=Suspension.TOKEN, token_id=grant.token_id).exists():
        return None
    user = get_user_model().objects.filter(pk=grant.user_id).first()
    if user is None or not may_visit(user, owner_user_id):
        return None
    return grant.user_id


def team_user(user_id: int, owner_user_id: int) -> bool:
    """Whether the user `user_id` (a team pass's holder) may still visit `owner_user_id`'s
    team-only tunnels: asked again by the relay once per TEAM_ANSWER_TTL_S, so leaving the
    group, deactivation or suspension ends a pass within that time."""
    user = get_user_model().objects.filter(pk=user_id).first()
    return user is not None and may_visit(user, owner_user_id)
