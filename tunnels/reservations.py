"""A user reserving a name for themselves on the account page, within their plan's
`max_reserved_names`. The count and the insert are one transaction holding the user's row
(SELECT ... FOR UPDATE on PostgreSQL; SQLite's transactions here begin IMMEDIATE, so the
second of two concurrent requests waits for the first's commit): two POSTs at once cannot
both take the last free place. The name's uniqueness is the table's own constraint."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from tunnels.models import ReservedSubdomain
from tunnels.plans import PlanLimits


class NotReserved(Exception):
    """What to tell the user instead (a sentence)."""


def reserve(user_id: int, name: str, limits: PlanLimits) -> ReservedSubdomain:
    if limits.max_reserved_names == 0:
        raise NotReserved(
            f"Your plan ({limits.plan}) includes no reserved names; ask the relay's "
            "operator to reserve one for you."
        )
    try:
        with transaction.atomic():
            get_user_model().objects.select_for_update().filter(pk=user_id).first()
            used = ReservedSubdomain.objects.filter(user_id=user_id).count()
            if used >= limits.max_reserved_names:
                raise NotReserved(
                    f"Your plan ({limits.plan}) allows {limits.max_reserved_names} reserved "
                    f"name{'' if limits.max_reserved_names == 1 else 's'}, and you have "
                    f"{used}. Release one first."
                )
            return ReservedSubdomain.objects.create(user_id=user_id, name=name)
    except IntegrityError as error:  # reserved by another request meanwhile
        raise NotReserved(f"{name!r} is reserved already. Pick another name.") from error


def release(user_id: int, pk: int) -> str | None:
    """Release the user's own reservation `pk`: its name, or None when there is no such
    reservation of theirs (another's is not found either)."""
    row = ReservedSubdomain.objects.filter(pk=pk, user_id=user_id).first()
    if row is None:
        return None
    row.delete()
    return row.name
