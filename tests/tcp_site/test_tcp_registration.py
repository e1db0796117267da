"""Registering a TCP tunnel (`lt tcp`: protocol.TCP_KIND_HEADER) through the real async view:
every refusal the site makes itself, with its status and message, and the TcpAsk, rules and
answer it builds around relay.face.register.

The relay's TCP registration is another part of issue 15 (a stub refusing with 503 until it
is merged), so where a registration gets through the site, face.register is a recorder that
answers with a port: these tests check what the site asks of the relay and how it answers
the client, not the relay (tests/tcp_relay/ and tests/tcp/ do that)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

from django.conf import settings
from django.test import TestCase, override_settings
from harness.accounts import bearer, fresh_registry, make_token, make_user

from relay import face, protocol
from relay.face import Registration, TcpAsk, VisitorRules
from tunnels.models import Account, Plan, ReservedSubdomain, ReservedTcpPort, TunnelSession

PORTS = (20000, 20099)
GIVEN_PORT = 20042  # what the recorder's relay hands out


def tcp(port: int | str | None = None, **rules: object) -> dict[str, str]:
    headers = {protocol.TCP_KIND_HEADER: protocol.TCP_KIND}
    if port is not None:
        headers[protocol.TCP_REMOTE_PORT_HEADER] = str(port)
    if rules:
        headers[protocol.ACCESS_HEADER] = json.dumps(rules)
    return headers


@contextlib.contextmanager
def relay_calls() -> Iterator[list[dict[str, Any]]]:
    """face.register's keyword arguments, each call answered with GIVEN_PORT (or the port
    asked for): the relay's side is not what these tests are about."""
    seen: list[dict[str, Any]] = []

    async def recorder(requested: str | None, **kwargs: Any) -> Registration:
        seen.append({"requested": requested, **kwargs})
        ask: TcpAsk | None = kwargs.get("tcp")
        return Registration(
            name=requested or "quiet-otter",
            port=0,
            max_sockets=kwargs["max_sockets"],
            advertise_host=None,
            tcp_port=(ask.port or GIVEN_PORT) if ask is not None else 0,
        )

    with mock.patch.object(face, "register", recorder):
        yield seen


class DefaultsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        _, cls.token = make_token(make_user("owner"))

    async def test_tcp_is_off_by_default_and_lt_tcp_is_told_so(self) -> None:
        token = self.token
        async with fresh_registry() as registry:
            with relay_calls() as seen:
                r = await self.async_client.get("/?new", headers={**bearer(token), **tcp()})
            self.assertEqual(r.status_code, 403)
            self.assertIn("does not offer TCP tunnels", r.json()["message"])
            self.assertEqual((seen, registry.tunnels), ([], {}))


@override_settings(RELAY_TCP_PORTS=PORTS)
class RefusalsBeforeTheRelayTests(TestCase):
    """Each refusal answers with its status and message, and the relay is never asked."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        _, cls.token = make_token(cls.owner)
        cls.other = make_user("other")

    async def refused(self, path: str, headers: dict[str, str], status: int) -> str:
        async with fresh_registry() as registry:
            with relay_calls() as seen:
                r = await self.async_client.get(path, headers=headers)
            self.assertEqual(r.status_code, status, r.content)
            self.assertEqual(seen, [])
            self.assertEqual(registry.tunnels, {})
        message: str = r.json()["message"]
        return message

    @override_settings(RELAY_TCP_PORTS=None)
    async def test_a_relay_without_tcp_ports_says_tcp_is_off(self) -> None:
        message = await self.refused("/?new", {**bearer(self.token), **tcp()}, 403)
        self.assertEqual(
            message,
            "This relay does not offer TCP tunnels (its operator has not set RELAY_TCP_PORTS).",
        )

    async def test_a_kind_other_than_tcp_is_a_400(self) -> None:
        message = await self.refused(
            "/?new", {**bearer(self.token), protocol.TCP_KIND_HEADER: "udp"}, 400
        )
        self.assertIn("must be 'tcp'", message)
        self.assertIn("'udp'", message)

    async def test_a_remote_port_without_the_kind_is_a_400(self) -> None:
        message = await self.refused(
            "/?new", {**bearer(self.token), protocol.TCP_REMOTE_PORT_HEADER: "20001"}, 400
        )
        self.assertEqual(
            message,
            "X-Tunnelsite-Remote-Port is for TCP tunnels only: send X-Tunnelsite-Kind: tcp "
            "with it (`lt tcp`).",
        )

    async def test_no_token_is_a_401_saying_lt_login(self) -> None:
        message = await self.refused("/?new", tcp(), 401)
        self.assertTrue(
            message.startswith("TCP tunnels need an account on this relay: run `lt login")
        )

    @override_settings(RELAY_ALLOW_ANONYMOUS=True)
    async def test_no_token_is_a_401_even_where_anonymous_http_tunnels_are_allowed(self) -> None:
        message = await self.refused("/?new", tcp(), 401)
        self.assertIn("TCP tunnels need an account", message)

    async def test_a_password_or_team_only_is_a_400_naming_the_rules_tcp_has(self) -> None:
        for rules in ({"basic_auth": ["alice:secret-1"]}, {"private": True}):
            with self.subTest(rules=rules):
                message = await self.refused("/?new", {**bearer(self.token), **tcp(**rules)}, 400)
                self.assertIn("A TCP tunnel cannot ask for passwords", message)
                self.assertIn("only --cidr-allow and --cidr-deny", message)
                self.assertNotIn("secret-1", message)

    async def test_a_remote_port_that_is_not_a_number_is_a_400_naming_the_range(self) -> None:
        for raw in ("abc", "-1", "+20001", "20001.0", "1" * 40):
            with self.subTest(raw=raw):
                message = await self.refused("/?new", {**bearer(self.token), **tcp(raw)}, 400)
                self.assertIn("must be a whole number", message)
                self.assertIn("20000-20099", message)

    async def test_a_remote_port_outside_the_range_is_a_400_naming_the_range(self) -> None:
        for port in (19999, 20100, 0, 65536):
            with self.subTest(port=port):
                message = await self.refused("/?new", {**bearer(self.token), **tcp(port)}, 400)
                self.assertEqual(
                    message,
                    f"--remote-port {port} is not one of this relay's TCP ports, 20000-20099.",
                )

    async def test_a_port_not_reserved_for_the_user_is_a_403(self) -> None:
        await ReservedTcpPort.objects.acreate(port=20010, user=self.other)
        await ReservedTcpPort.objects.acreate(port=20011)  # for nobody
        for port in (20010, 20011, 20012):
            with self.subTest(port=port):
                message = await self.refused("/?new", {**bearer(self.token), **tcp(port)}, 403)
                self.assertEqual(
                    message,
                    f"Port {port} is not reserved for you; an operator reserves ports in the "
                    "admin. Leave out --remote-port for any free port.",
                )

    async def test_a_plan_without_tcp_is_a_403_naming_the_plan(self) -> None:
        plan = await Plan.objects.acreate(name="http-only", allow_tcp=False)
        await Account.objects.acreate(user=self.owner, plan=plan)
        message = await self.refused("/?new", {**bearer(self.token), **tcp()}, 403)
        self.assertIn("Your plan (http-only) does not include TCP tunnels", message)

    @override_settings(RELAY_DEFAULT_PLAN_TCP=False)
    async def test_a_default_plan_without_tcp_is_a_403(self) -> None:
        message = await self.refused("/?new", {**bearer(self.token), **tcp()}, 403)
        self.assertIn("Your plan (default) does not include TCP tunnels", message)

    async def test_a_plan_that_forces_sign_in_or_a_password_is_a_403(self) -> None:
        for auth in ("team", "required"):
            with self.subTest(auth=auth):
                plan = await Plan.objects.acreate(name=f"strict-{auth}", visitor_auth=auth)
                await Account.objects.aupdate_or_create(user=self.owner, defaults={"plan": plan})
                message = await self.refused("/?new", {**bearer(self.token), **tcp()}, 403)
                self.assertIn(f"Your plan (strict-{auth}) requires", message)
                self.assertIn("a TCP tunnel cannot ask for", message)

    async def test_a_reserved_name_that_forces_team_only_is_a_403(self) -> None:
        await ReservedSubdomain.objects.acreate(
            name="postgres", user=self.owner, visitor_auth="team"
        )
        message = await self.refused("/postgres", {**bearer(self.token), **tcp()}, 403)
        self.assertIn("The reserved name 'postgres' requires", message)

    @override_settings(RELAY_NODE_NAME="node-a")
    async def test_on_a_cluster_node_the_live_tcp_tunnels_of_every_node_count(self) -> None:
        for index, node in enumerate(("node-a", "node-b")):  # the default plan allows 2
            await TunnelSession.objects.acreate(
                subdomain=f"db{index}",
                owner=self.owner,
                node=node,
                client_ip="192.0.2.1",
                port=0,
                max_sockets=10,
                tcp_port=20000 + index,
            )
        await TunnelSession.objects.acreate(  # an HTTP tunnel does not count
            subdomain="web", owner=self.owner, client_ip="192.0.2.1", port=0, max_sockets=10
        )
        message = await self.refused("/?new", {**bearer(self.token), **tcp()}, 429)
        self.assertIn("You already have 2 live TCP tunnels", message)


@override_settings(RELAY_TCP_PORTS=PORTS)
class WhatTheRelayIsAskedTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        _, cls.token = make_token(cls.owner)
        cls.other = make_user("other")

    async def registered(self, path: str, headers: dict[str, str]) -> tuple[dict[str, Any], Any]:
        async with fresh_registry():
            with relay_calls() as seen:
                r = await self.async_client.get(path, headers=headers)
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(len(seen), 1)
        return seen[0], r.json()

    async def test_the_answer_is_the_tcp_url_and_port(self) -> None:
        _, answer = await self.registered("/?new", {**bearer(self.token), **tcp()})
        self.assertEqual(answer["tcp_port"], GIVEN_PORT)
        self.assertEqual(answer["url"], f"tcp://{settings.RELAY_TCP_HOST}:{GIVEN_PORT}")
        self.assertEqual(answer["id"], "quiet-otter")

    @override_settings(RELAY_TCP_HOST="tcp.example.net")
    async def test_the_url_names_relay_tcp_host(self) -> None:
        _, answer = await self.registered("/?new", {**bearer(self.token), **tcp()})
        self.assertEqual(answer["url"], f"tcp://tcp.example.net:{GIVEN_PORT}")

    async def test_the_reserved_set_holds_every_reserved_port_the_users_own_too(self) -> None:
        """The user's own reserved ports are for --remote-port only (attack finding 7)."""
        await ReservedTcpPort.objects.acreate(port=20001, user=self.owner)
        await ReservedTcpPort.objects.acreate(port=20002, user=self.other)
        await ReservedTcpPort.objects.acreate(port=20003)
        await ReservedTcpPort.objects.acreate(port=30000, user=self.other)  # not this relay's
        call, _ = await self.registered("/?new", {**bearer(self.token), **tcp()})
        self.assertEqual(
            call["tcp"], TcpAsk(port=0, reserved=frozenset({20001, 20002, 20003}), max_live=2)
        )

    async def test_a_port_reserved_for_the_user_is_asked_for(self) -> None:
        await ReservedTcpPort.objects.acreate(port=20001, user=self.owner)
        call, answer = await self.registered("/?new", {**bearer(self.token), **tcp(20001)})
        self.assertEqual(call["tcp"].port, 20001)
        self.assertNotIn(20001, call["tcp"].reserved)
        self.assertEqual(answer["url"], f"tcp://{settings.RELAY_TCP_HOST}:20001")

    async def test_max_live_is_the_plans_max_tcp_tunnels(self) -> None:
        plan = await Plan.objects.acreate(name="databases", max_tcp_tunnels=7)
        await Account.objects.acreate(user=self.owner, plan=plan)
        call, _ = await self.registered("/?new", {**bearer(self.token), **tcp()})
        self.assertEqual(call["tcp"].max_live, 7)

    async def test_max_live_of_the_default_plan_is_the_setting(self) -> None:
        call, _ = await self.registered("/?new", {**bearer(self.token), **tcp()})
        self.assertEqual(call["tcp"].max_live, settings.RELAY_DEFAULT_PLAN_MAX_TCP_TUNNELS)
        self.assertEqual(call["tcp"].max_live, 2)

    async def test_cidr_rules_of_the_client_and_the_plan_reach_the_relay_without_a_warning(
        self,
    ) -> None:
        plan = await Plan.objects.acreate(
            name="office", cidr_allow="198.51.100.0/24", cidr_deny="198.51.100.7", warning_page="on"
        )
        await Account.objects.acreate(user=self.owner, plan=plan)
        call, _ = await self.registered(
            "/?new",
            {**bearer(self.token), **tcp(cidr_allow=["198.51.100.0/25"], cidr_deny=["10.0.0.1"])},
        )
        self.assertEqual(
            call["rules"],
            VisitorRules(
                cidr_allow=(("198.51.100.0/25",), ("198.51.100.0/24",)),
                cidr_deny=("10.0.0.1/32", "198.51.100.7/32"),
                warning=False,  # forced on by the plan, but there is no page to show
                owner_label="owner",
            ),
        )
        self.assertFalse(call["inspect"])

    async def test_a_named_tcp_tunnel_under_the_users_reserved_name(self) -> None:
        await ReservedSubdomain.objects.acreate(
            name="postgres", user=self.owner, cidr_deny="10.9.0.0/16"
        )
        call, answer = await self.registered("/postgres", {**bearer(self.token), **tcp()})
        self.assertEqual(call["requested"], "postgres")
        self.assertEqual(call["rules"].cidr_deny, ("10.9.0.0/16",))
        self.assertEqual(answer["id"], "postgres")

    async def test_an_http_registration_asks_for_no_tcp(self) -> None:
        call, answer = await self.registered("/?new", bearer(self.token))
        self.assertIsNone(call["tcp"])
        self.assertNotIn("tcp_port", answer)
        self.assertTrue(answer["url"].startswith(settings.RELAY_PUBLIC_SCHEME + "://"))

    @override_settings(RELAY_TCP_ANONYMOUS=True, RELAY_ALLOW_ANONYMOUS=True)
    async def test_an_anonymous_tcp_tunnel_where_allowed_gets_no_reserved_port(self) -> None:
        await ReservedTcpPort.objects.acreate(port=20001, user=self.owner)
        await ReservedTcpPort.objects.acreate(port=20003)
        call, answer = await self.registered("/?new", tcp())
        self.assertEqual(call["tcp"].reserved, frozenset({20001, 20003}))
        self.assertEqual(answer["tcp_port"], GIVEN_PORT)
        async with fresh_registry():
            with relay_calls() as seen:
                r = await self.async_client.get("/?new", headers=tcp(20001))
        self.assertEqual(r.status_code, 403)
        self.assertEqual(seen, [])
