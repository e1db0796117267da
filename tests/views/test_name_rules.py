"""Who may register which name, through Django's async test client and real pool listeners
(issue 10 items 5, 6, 23 and 26): live holders, takeovers, route names, the registration
rate, session pruning, and IPv6 owners counted per /64.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import path
from django.utils import timezone
from harness.accounts import (
    AddressedClient,
    bearer,
    isolated,
    make_token,
    make_user,
    upgraded_pool_connection,
)
from harness.waiting import wait_until_async

from relay import face, protocol
from relay.headers import address_key
from relay.pool.ports import port_candidates
from relay.pool.quota import RegistrationRate
from relay.pool.registry import get_registry
from relay.protocol import PRUNE_BATCH
from tunnels import route_names, store, views
from tunnels.models import TunnelSession as Session
from tunnelsite_client.backoff import MAX_DELAY_S, delay_for

OWNER = ("127.0.0.1", 50000)
LT = "tunnelsite-lt/0.1"
NPM = "axios/0.21.4"


def lt_headers(client_id: str = "", **extra: str) -> dict[str, str]:
    headers = {"User-Agent": LT, **extra}
    if client_id:  # our lt, asking for the upgraded pool
        headers["X-Tunnelsite-Client"] = client_id
        headers["X-Tunnelsite-Pool"] = "upgrade"
    return headers


@override_settings(RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0)
class LiveHolderTests(TestCase):
    """Item 5: a name whose client is connected is never shared."""

    async def _get(self, target: str, address=OWNER, **headers: str):
        return await AddressedClient(address).get(target, headers=headers)

    async def _online(
        self, name: str, client_id: str, **extra: str
    ) -> tuple[str, asyncio.StreamWriter]:
        """Our lt holding `name` with one pool connection; returns its pool secret."""
        answer = await self._get(f"/{name}", **lt_headers(client_id, **extra))
        self.assertEqual(answer.status_code, 200, answer.content)
        tunnel = get_registry().get(name)
        self.reader, writer = await upgraded_pool_connection(tunnel)
        await wait_until_async(lambda: tunnel.connected_sockets == 1)
        return answer.json()["pool_secret"], writer

    @isolated
    async def test_a_second_client_of_the_same_owner_gets_409_saying_where_and_since(self):
        port, writer = await self._online("held-name", "client-aaaa-0001")
        try:
            for headers in (lt_headers("client-bbbb-0002"), {"User-Agent": NPM}):
                answer = await self._get("/held-name", **headers)
                body = answer.json()
                self.assertEqual(body["status"], 409)
                self.assertIn("in use by another client of yours", body["message"])
                self.assertIn("connected from 127.0.0.1 since", body["message"])
                self.assertIn("(1 pool socket)", body["message"])
            self.assertEqual(get_registry().get("held-name").connected_sockets, 1)
        finally:
            writer.close()

    @isolated
    async def test_the_same_client_reconnecting_gets_its_name_back_with_a_new_pool_secret(self):
        secret, writer = await self._online("held-name", "client-aaaa-0001")
        try:
            again = await self._get(
                "/held-name", **lt_headers("client-aaaa-0001", **{"Tunnelsite-Pool-Secret": secret})
            )
            self.assertEqual(again.status_code, 200)
            self.assertEqual(again["Cache-Control"], "no-store")  # it carries a pool secret
            self.assertEqual(again.json()["id"], "held-name")
            self.assertEqual(again.json()["port"], 0)  # our lt upgrades: no raw pool port
            self.assertTrue(again.json()["pool_url"].endswith("/api/tunnels/held-name/pool"))
            self.assertNotEqual(again.json()["pool_secret"], secret)
        finally:
            writer.close()

    @isolated
    async def test_a_name_just_registered_counts_as_held_while_its_client_connects(self):
        first = await self._get("/held-name", **lt_headers("client-aaaa-0001"))
        self.assertEqual(first.status_code, 200)
        second = await self._get("/held-name", **lt_headers("client-bbbb-0002"))
        self.assertEqual(second.status_code, 409)
        self.assertIn("(connecting)", second.json()["message"])

    @isolated
    async def test_takeover_closes_the_old_client_and_tells_it_why_on_its_next_try(self):
        user = await sync_to_async(make_user)("taker")
        _, token = await sync_to_async(make_token)(user)
        auth = bearer(token)  # a token holder's: an anonymous tunnel is never taken over
        old_secret, writer = await self._online("held-name", "client-aaaa-0001", **auth)
        try:
            taken = await self._get(
                "/held-name?takeover=1", **lt_headers("client-bbbb-0002", **auth)
            )
            self.assertEqual(taken.status_code, 200, taken.content)
            # The old client's reconnects cannot attach: its secret is not the new one's.
            self.assertNotEqual(taken.json()["pool_secret"], old_secret)
            self.assertFalse(get_registry().get("held-name").secret_matches(old_secret))
            async with asyncio.timeout(5):
                self.assertEqual(await self.reader.read(), b"")  # closed by the relay
            old = await self._get("/held-name", **lt_headers("client-aaaa-0001", **auth))
            self.assertEqual(old.status_code, 409)
            self.assertEqual(old["X-Tunnelsite-Refusal"], "taken-over")
            self.assertIn("was taken over by another client", old.json()["message"])
            fresh = await self._get("/?new", **lt_headers("client-aaaa-0001"))
            self.assertEqual(fresh["X-Tunnelsite-Refusal"], "taken-over")  # not elsewhere
            gone = await AddressedClient(OWNER).delete(
                "/api/tunnels/held-name", headers=lt_headers("client-aaaa-0001", **auth)
            )
            self.assertEqual(gone.status_code, 409)  # its exit leaves the new holder alone
            self.assertIn("held-name", get_registry().tunnels)
        finally:
            writer.close()

    @isolated
    async def test_a_moved_anonymous_tunnel_belongs_to_its_new_address_row_and_counts(self):
        """Review finding 1: the owner moves with the secret's proof, everywhere it is used:
        the tunnel, the owner's live count (release_for_owner), the session row's address."""
        moved = ("127.0.0.77", 50001)
        secret, writer = await self._online("held-name", "client-aaaa-0001")
        try:
            again = await self._get(
                "/held-name",
                moved,
                **lt_headers("client-aaaa-0001", **{"Tunnelsite-Pool-Secret": secret}),
            )
            self.assertEqual(again.status_code, 200, again.content)
            tunnel = get_registry().get("held-name")
            self.assertEqual((tunnel.owner, tunnel.client_ip), ("ip:127.0.0.77", "127.0.0.77"))
            _, moved_writer = await upgraded_pool_connection(tunnel)  # from where it is now
            await wait_until_async(lambda: tunnel.connected_sockets == 1)
            await get_registry().flush()
            row = await Session.objects.aget(subdomain="held-name", is_live=True)
            self.assertEqual(row.client_ip, "127.0.0.77")
            # Counted for its new address, no longer for the old one.
            self.assertFalse(face.release_for_owner("ip:127.0.0.77", 1))
            self.assertTrue(face.release_for_owner("ip:127.0.0.1", 1))
            for target in ("/held-name?takeover=1", "/held-name"):
                thief = await self._get(target, **lt_headers("client-bbbb-0002"))
                self.assertEqual(thief.status_code, 409, thief.content)
            self.assertIs(get_registry().get("held-name"), tunnel)
            self.assertEqual(tunnel.connected_sockets, 1)
            moved_writer.close()
        finally:
            writer.close()

    @isolated
    async def test_a_token_holders_pool_secret_opens_nothing_for_another_user(self):
        """The secret proves a moved anonymous client; a token's tunnel stays its user's,
        whoever presents its secret (with another user's token, or none)."""
        owner = await sync_to_async(make_user)("owner-a")
        other = await sync_to_async(make_user)("owner-b")
        _, token_a = await sync_to_async(make_token)(owner)
        _, token_b = await sync_to_async(make_token)(other)
        secret, writer = await self._online("held-name", "client-aaaa-0001", **bearer(token_a))
        try:
            for auth in (bearer(token_b), {}):
                thief = await self._get(
                    "/held-name",
                    ("127.0.0.9", 1),
                    **lt_headers("client-cccc-0003", **{"Tunnelsite-Pool-Secret": secret}, **auth),
                )
                self.assertEqual(thief.status_code, 409, thief.content)
            tunnel = get_registry().get("held-name")
            self.assertEqual((tunnel.user_id, tunnel.connected_sockets), (owner.pk, 1))
            self.assertTrue(tunnel.secret_matches(secret))  # nothing was handed out
        finally:
            writer.close()

    @isolated
    async def test_takeover_is_not_allowed_on_another_owners_name(self):
        _, writer = await self._online("held-name", "client-aaaa-0001")
        try:
            thief = await self._get(
                "/held-name?takeover=1", ("127.0.0.9", 1), **lt_headers("client-cccc-0003")
            )
            self.assertEqual(thief.status_code, 409)
            self.assertNotIn("127.0.0.1", thief.json()["message"])  # not told where it is
            self.assertEqual(get_registry().get("held-name").connected_sockets, 1)
        finally:
            writer.close()


@override_settings(RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0)
class RouteNameTests(TestCase):
    """Item 6: names of the bare domain's routes are never tunnels."""

    async def _get(self, target: str, **headers: str):
        return await AddressedClient(OWNER).get(target, headers=headers)

    def test_route_names_come_from_the_urlconf(self):
        names = route_names.site_route_names()
        self.assertLessEqual({"admin", "api", "healthz", "static", "favicon.ico"}, names)

    @isolated
    async def test_every_route_name_gets_the_reserved_refusal_from_both_clients(self):
        for name in sorted(route_names.site_route_names()):
            ours = await self._get(f"/{name}", **{"User-Agent": LT})
            self.assertEqual(ours.status_code, 403, (name, ours.content))
            self.assertIn("is reserved", ours.json()["message"])
            npm = await self._get(f"/{name}", **{"User-Agent": NPM})
            self.assertEqual((npm.status_code, npm["X-Tunnelsite-Status"]), (203, "403"))
            self.assertIn("is reserved", npm.json()["message"])
        self.assertEqual(get_registry().tunnels, {})

    @isolated
    async def test_healthz_answers_health_and_admin_redirects_for_everyone_else(self):
        health = await self._get("/healthz", **{"User-Agent": "kube-probe/1.29"})
        self.assertEqual((health.status_code, health.json()["status"]), (200, "ok"))
        admin = await self._get("/admin", **{"User-Agent": "Mozilla/5.0"})
        self.assertEqual((admin.status_code, admin["Location"]), (302, "/admin/"))
        self.assertEqual(get_registry().tunnels, {})

    @override_settings(ROOT_URLCONF="tests.views.test_name_rules")
    @isolated
    async def test_a_route_added_later_is_reserved_without_a_list_to_update(self):
        self.assertIn("metrics", route_names.site_route_names())
        answer = await self._get("/metrics", **{"User-Agent": LT})
        self.assertEqual(answer.status_code, 403)
        self.assertIn("is reserved", answer.json()["message"])
        site = await self._get("/metrics", **{"User-Agent": "curl/8"})
        self.assertEqual(site.content, b"metrics page")


async def _metrics(request):  # noqa: ANN001, ANN202 - the route of the test URLconf below
    from django.http import HttpResponse

    return HttpResponse(b"metrics page")


def _later_urlpatterns() -> list:
    from tunnelsite.urls import urlpatterns as site

    return views.guard_bare_routes([path("metrics", _metrics), *site])


urlpatterns = _later_urlpatterns()  # ROOT_URLCONF of the test above


@override_settings(RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0)
class Ipv6OwnerTests(TestCase):
    """Item 26: an IPv6 network of RELAY_IPV6_PREFIX bits is one owner."""

    async def _new(self, ip: str):
        return await AddressedClient((ip, 40000)).get("/?new", headers={"User-Agent": LT})

    @isolated
    async def test_one_64_shares_the_default_live_tunnel_limit(self):
        net = ipaddress.IPv6Network("2001:db8:1:2::/64")
        hosts = [str(net[random.randrange(1, 2**64)]) for _ in range(6)]
        answers = [await self._new(ip) for ip in hosts]
        self.assertEqual([a.status_code for a in answers], [200] * 5 + [429])
        other_net = await self._new("2001:db8:1:3::1")
        self.assertEqual(other_net.status_code, 200)
        name = answers[0].json()["id"]
        closed = await AddressedClient((hosts[5], 1)).delete(f"/api/tunnels/{name}")
        self.assertEqual(closed.status_code, 204)  # the same owner, from another address

    @override_settings(RELAY_IPV6_PREFIX=128)
    @isolated
    async def test_a_prefix_of_128_counts_single_addresses(self):
        answers = [await self._new(f"2001:db8:1:2::{i}") for i in range(1, 8)]
        self.assertEqual([a.status_code for a in answers], [200] * 7)

    def test_address_keys(self):
        self.assertEqual(address_key("192.0.2.7", 64), "192.0.2.7")
        self.assertEqual(address_key("::ffff:192.0.2.7", 64), "192.0.2.7")
        self.assertEqual(address_key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64")
        self.assertEqual(address_key("2001:db8:1:2:aaaa::1", 48), "2001:db8:1::/48")
        self.assertEqual(address_key("2001:db8::1", 128), "2001:db8::1")
        self.assertEqual(address_key("::1", 64), "::/64")


class RegistrationRateTests(SimpleTestCase):
    """Item 23: the default rate never stops our lt's reconnect backoff."""

    def test_our_lt_retrying_for_an_hour_is_never_limited_by_the_defaults(self):
        from django.conf import settings

        class Shortest(random.Random):  # each backoff delay at its lower bound
            def uniform(self, a: float, b: float) -> float:
                return a

        rate = RegistrationRate(
            settings.RELAY_REGISTRATION_BURST, settings.RELAY_REGISTRATIONS_PER_MINUTE
        )
        now, attempt = 0.0, 0
        while now < 3600:
            self.assertEqual(rate.take("ip:192.0.2.1", now), 0.0, f"refused at {now:.1f} s")
            now += delay_for(attempt, Shortest())
            attempt += 1
        self.assertEqual(delay_for(99, Shortest()), MAX_DELAY_S)

    def test_a_loop_gets_the_burst_then_one_per_refill(self):
        rate = RegistrationRate(burst=20, per_minute=10)
        self.assertEqual([rate.take("o", 0.0) for _ in range(20)], [0.0] * 20)
        self.assertAlmostEqual(rate.take("o", 0.0), 6.0)
        self.assertEqual(rate.take("o", 6.0), 0.0)

    def test_the_table_forgets_owners_whose_bucket_is_full_again(self):
        rate = RegistrationRate(burst=2, per_minute=60)
        rate.PRUNE_ABOVE = rate.prune_at = 10
        for i in range(11):  # over 10: pruned, but nobody is full yet; next time over 22
            rate.take(f"o{i}", 0.0)
        late = [f"late{i}" for i in range(12)]
        for owner in late:  # 100 s on, the first eleven are full again
            rate.take(owner, 100.0)
        self.assertEqual(set(rate.buckets), set(late))


class SessionPruningTests(TestCase):
    """Item 23: closed rows past RELAY_SESSION_RETENTION_DAYS go, in batches."""

    def _row(self, name: str, closed_days_ago: float | None) -> Session:
        row = Session.objects.create(subdomain=name, client_ip="192.0.2.1", port=1, max_sockets=1)
        if closed_days_ago is not None:
            row.is_live = False
            row.closed_at = timezone.now() - timedelta(days=closed_days_ago)
            row.save()
        return row

    def test_old_closed_rows_go_in_batches_and_live_and_recent_rows_stay(self):
        for i in range(5):
            self._row(f"old-{i}", 40)
        self._row("recent", 3)
        self._row("live-now", None)
        self.assertEqual(store.prune_closed_sessions(30, batch=2), 2)
        self.assertEqual(store.prune_closed_sessions(30, batch=2), 2)
        self.assertEqual(store.prune_closed_sessions(30, batch=2), 1)
        self.assertEqual(store.prune_closed_sessions(30, batch=2), 0)
        names = set(Session.objects.values_list("subdomain", flat=True))
        self.assertEqual(names, {"recent", "live-now"})
        self.assertEqual(store.prune_closed_sessions(0, batch=2), 0)  # 0: keep for ever

    @isolated
    async def test_the_registry_prunes_with_the_default_retention_then_waits(self):
        from asgiref.sync import sync_to_async

        await sync_to_async(self._row)("old-one", 31)
        await sync_to_async(self._row)("kept-one", 29)
        registry = get_registry()
        self.assertEqual(await registry.prune_sessions(now=1000.0), 1)
        await sync_to_async(self._row)("old-two", 31)
        self.assertEqual(await registry.prune_sessions(now=1001.0), 0)  # not before an hour
        self.assertEqual(await registry.prune_sessions(now=1000.0 + 3601), 1)
        self.assertLess(1, PRUNE_BATCH)


class PoolPortSearchTests(SimpleTestCase):
    """Item 22: every port of the range the relay does not hold is tried, each once."""

    def test_every_free_port_comes_once_whatever_the_size_of_the_range(self):

        for first, last in ((40000, 40000), (40000, 40009), (20000, 29999)):
            held = set(range(first, last + 1, 3))
            tried = list(port_candidates(first, last, held))
            self.assertEqual(len(tried), len(set(tried)))
            self.assertEqual(set(tried), set(range(first, last + 1)) - held)


@override_settings(
    RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0, RELAY_RESERVED_NAMES={"mail-box"}
)
class RandomNameTests(TestCase):
    """Item 6: a random name is never a route's or a reserved one."""

    @isolated
    async def test_a_random_name_that_is_reserved_is_drawn_again(self):
        from unittest import mock

        draws = iter(["admin", "mail-box", "static", "quiet-fox-0001"])
        with mock.patch("relay.protocol.random_subdomain", lambda: next(draws)):
            answer = await AddressedClient(OWNER).get("/?new", headers={"User-Agent": LT})
        self.assertEqual(answer.json()["id"], "quiet-fox-0001")


@override_settings(RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0)
class NameShapeTests(TestCase):
    """A name is one DNS label a visitor can reach: nothing after it, at most 63 characters.
    An invalid name is a 403, as the reference server answers it."""

    async def _status(self, name: str) -> int:
        answer = await AddressedClient(OWNER).get(f"/{name}", headers={"User-Agent": LT})
        body = answer.json()
        if answer.status_code != 200:
            self.assertIn("Invalid subdomain", body["message"])
            self.assertIn(protocol.SUBDOMAIN_RULE, body["message"])
        return answer.status_code

    @isolated
    async def test_a_name_with_a_trailing_newline_is_refused(self) -> None:
        self.assertEqual(await self._status("abcd%0A"), 403)
        self.assertEqual(await self._status("my-app%0A"), 403)
        self.assertIsNone(get_registry().get("abcd\n"))

    @isolated
    async def test_names_longer_than_a_dns_label_are_refused(self) -> None:
        self.assertEqual(await self._status("a" * 64), 403)
        self.assertEqual(await self._status("a" + "-" * 62 + "b"), 403)  # 64 characters
        self.assertEqual(await self._status("a" + "-" * 63 + "b"), 403)  # 65 characters

    @isolated
    async def test_the_longest_names_that_fit_a_dns_label_are_accepted(self) -> None:
        self.assertEqual(await self._status("a" * 63), 200)
        self.assertEqual(await self._status("a" + "-" * 61 + "b"), 200)  # 63 characters
