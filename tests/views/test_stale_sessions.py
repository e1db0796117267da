"""At start a relay closes the sessions an earlier run left live, while its listener already
takes registrations: a session this run opened in that moment is not stale."""

from __future__ import annotations

from datetime import timedelta

from django.test import TestCase
from django.utils import timezone

from tunnels import store
from tunnels.models import TunnelSession


def session(name: str) -> TunnelSession:
    return TunnelSession.objects.create(
        subdomain=name, client_ip="127.0.0.1", port=40000, max_sockets=10
    )


class StaleSessionTests(TestCase):
    def test_only_sessions_opened_before_this_run_started_are_closed(self) -> None:
        earlier = session("earlier-run")
        TunnelSession.objects.filter(pk=earlier.pk).update(
            opened_at=timezone.now() - timedelta(minutes=5)
        )
        started_at = timezone.now()
        mine = session("this-run")  # registered before the stale ones were closed

        self.assertEqual(store.close_stale_sessions(started_at), 1)

        earlier.refresh_from_db()
        mine.refresh_from_db()
        self.assertEqual((earlier.is_live, earlier.close_reason), (False, "relay restarted"))
        self.assertEqual((mine.is_live, mine.close_reason), (True, ""))
