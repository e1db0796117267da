"""The ORM behind relay.records: what the relay keeps in the database, written with Django.

`tunnels.apps.TunnelsConfig.ready()` installs an `OrmRecords` through relay.face, so relay/
reaches these functions without importing tunnels/. The work itself lives in three small
modules: session rows (tunnels/store.py), node rows (tunnels/nodes.py) and the start-up lock
(tunnels/dblock.py); the token-key check is tunnels/auth.py's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relay.face import MinuteRollup, NodeLoad, SessionUpdate, UsageDelta
from tunnels import auth, dblock, nodes, store, suspensions, team, traffic_rows, usage_rows


class OrmRecords:
    """relay.records.Records, with Django's ORM."""

    def open_session(
        self,
        *,
        subdomain: str,
        client_ip: str,
        port: int,
        max_sockets: int,
        owner_id: int | None = None,
        token_id: int | None = None,
        max_live: int = 0,
        tcp_port: int | None = None,
    ) -> int:
        return store.open_session(
            subdomain=subdomain,
            client_ip=client_ip,
            port=port,
            max_sockets=max_sockets,
            owner_id=owner_id,
            token_id=token_id,
            max_live=max_live,
            tcp_port=tcp_port,
        )

    def apply_updates(self, updates: list[SessionUpdate]) -> None:
        store.apply_updates(updates)

    def close_stale_sessions(self, started_at: datetime) -> int:
        return store.close_stale_sessions(started_at)

    def unusable_tokens(self, token_ids: set[int]) -> set[int]:
        return store.unusable_tokens(token_ids)

    def prune_closed_sessions(self, retention_days: int, batch: int) -> int:
        return store.prune_closed_sessions(retention_days, batch)

    def heartbeat(
        self, name: str, advertise: str, started_at: datetime, draining: bool, load: NodeLoad
    ) -> None:
        nodes.heartbeat(name, advertise, started_at, draining, load)

    def reap_dead_nodes(self, me: str, expiry_s: float) -> dict[str, int]:
        return nodes.reap_dead_nodes(me, expiry_s)

    def directory(self, me: str, expiry_s: float) -> dict[str, str]:
        return nodes.directory(me, expiry_s)

    def closed_among(self, session_ids: list[int]) -> list[int]:
        return nodes.closed_among(session_ids)

    def live_holder(self, subdomain: str) -> tuple[str, str] | None:
        return nodes.live_holder(subdomain)

    def mark_draining(self, name: str) -> None:
        nodes.mark_draining(name)

    def lock_database(self, node_name: str) -> list[Any]:
        return dblock.lock_database(node_name)

    def tokens_under_another_key(self) -> int:
        return auth.tokens_under_another_key()

    def suspended_names(self) -> dict[str, str]:
        return suspensions.suspended_names()

    def suspended_ids(self) -> tuple[dict[int, str], dict[int, str]]:
        return suspensions.suspended_ids()

    def team_member(self, credential: str, owner_user_id: int) -> int | None:
        return team.team_member(credential, owner_user_id)

    def team_user(self, user_id: int, owner_user_id: int) -> bool:
        return team.team_user(user_id, owner_user_id)

    # --- account usage and the dashboard's minutes (issue 16) ---------------------------------
    def add_usage(self, deltas: list[UsageDelta]) -> dict[tuple[str, str, int], tuple[int, int]]:
        return usage_rows.add_usage(deltas)

    def usage_of(self, owner: str, minute: int, day: int) -> tuple[int, int]:
        return usage_rows.usage_of(owner, minute, day)

    def prune_usage(self, before: int) -> int:
        return usage_rows.prune_usage(before)

    def add_minutes(self, rollups: list[MinuteRollup]) -> None:
        traffic_rows.add_minutes(rollups)

    def minutes_since(self, start: int) -> list[MinuteRollup]:
        return traffic_rows.minutes_since(start)

    def prune_minutes(self, before: int) -> int:
        return traffic_rows.prune_minutes(before)
