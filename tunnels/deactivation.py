"""A user made inactive (is_active unticked in the admin, or any save that clears it) loses
their live tunnels on every relay at once, as a suspended user does (tunnels/control.py).
Their tokens are refused from then on by tunnels/auth.py, and their sessions by Django's
ModelBackend; without this their tunnels already open would keep serving until they closed.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save

from tunnels import control

DEACTIVATED = "the account was deactivated by the operator"


def close_if_inactive(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    """post_save of the user model: an inactive user's tunnels are closed once the save is
    committed (a rolled-back save closes nothing). Saving an inactive user again sends the
    close again, which finds nothing to close: harmless, and rare."""
    if created or getattr(instance, "is_active", True):
        return
    user_id = instance.pk
    transaction.on_commit(lambda: control.close_users([user_id], DEACTIVATED))


def connect() -> None:
    post_save.connect(
        close_if_inactive, sender=get_user_model(), dispatch_uid="tunnels.deactivation"
    )
