"""tunnelsite's ASGI app, whose registrations of the names in TEST_VISITOR_RULES (JSON:
{name: {"basic_auth": [...], "cidr_allow": [[...], ...], "cidr_deny": [...], "team": bool,
"warning": bool, "owner_label": str}}) carry those visitor rules into relay.face.register,
as tunnels/access.py will. Everything else, the relay's byte path included, is the real one."""

from __future__ import annotations

import json
import os
from typing import Any

from relay import face
from relay.pool.access import VisitorRules
from tunnelsite.asgi import application

__all__ = ["application"]

_RULES: dict[str, dict[str, Any]] = json.loads(os.environ.get("TEST_VISITOR_RULES", "{}"))
_register = face.register


def rules_for(spec: dict[str, Any]) -> VisitorRules:
    return VisitorRules(
        basic_auth=tuple(spec.get("basic_auth", ())),
        cidr_allow=tuple(tuple(group) for group in spec.get("cidr_allow", ())),
        cidr_deny=tuple(spec.get("cidr_deny", ())),
        team=bool(spec.get("team", False)),
        warning=bool(spec.get("warning", False)),
        owner_label=str(spec.get("owner_label", "")),
    )


async def _register_with_rules(requested: str | None, **kwargs: Any) -> face.Registration:
    spec = _RULES.get(requested or "")
    if spec is not None:
        kwargs["rules"] = rules_for(spec)
    return await _register(requested, **kwargs)


face.register = _register_with_rules  # type: ignore[assignment]
