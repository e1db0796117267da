"""The ports a TCP registration may not get at random, and the port it is given back, as the
site computes them from the session rows (attack findings 1 and 7): another owner's port is
quarantined for protocol.TCP_PORT_QUARANTINE_S after its tunnel closed (and while it is live),
a user's own reserved ports are only handed out when asked for, and a name re-registered by
its owner within the quarantine (lt after a relay restart) is offered its port back."""

from __future__ import annotations

from datetime import timedelta

from django.test import TestCase, override_settings
from django.utils import timezone
from harness.accounts import make_token, make_user

from relay import protocol
from relay.face import TcpAsk
from tunnels import tcp_ports, tcp_registration
from tunnels.models import ReservedTcpPort, TunnelSession
from tunnels.tcp_registration import Ask

PORTS = (20000, 20009)
IP = "192.0.2.10"
OTHER_IP = "192.0.2.77"
RECENTLY = timedelta(minutes=5)
LONG_AGO = timedelta(seconds=protocol.TCP_PORT_QUARANTINE_S) + timedelta(minutes=5)


@override_settings(RELAY_TCP_PORTS=PORTS)
class PortsKeptTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        _, cls.token = make_token(cls.owner)
        cls.other = make_user("other")

    def session(
        self, name: str, port: int, user: object, ago: timedelta | None, ip: str = IP
    ) -> TunnelSession:
        """A TCP tunnel's session row: closed `ago` (None: live)."""
        closed = ago is not None
        return TunnelSession.objects.create(
            subdomain=name,
            owner=user,
            client_ip=ip,
            port=0,
            max_sockets=10,
            tcp_port=port,
            is_live=not closed,
            closed_at=timezone.now() - ago if closed else None,
        )

    def ask(self, name: str | None = None, port: int = 0, token: str | None = "") -> TcpAsk:
        credential = self.token if token == "" else token
        _, tcp = tcp_registration.grant_registration(credential, IP, name, Ask(port=port))
        return tcp

    def test_another_users_port_closed_a_moment_ago_is_never_handed_out_at_random(self) -> None:
        self.session("theirs", 20001, self.other, RECENTLY)
        self.assertIn(20001, self.ask().reserved)

    def test_another_users_live_port_is_never_handed_out(self) -> None:
        self.session("theirs", 20002, self.other, None)
        self.assertIn(20002, self.ask().reserved)

    def test_another_users_port_is_free_again_after_the_quarantine(self) -> None:
        self.session("theirs", 20003, self.other, LONG_AGO)
        self.assertNotIn(20003, self.ask().reserved)

    def test_the_users_own_recent_port_is_not_quarantined_for_them(self) -> None:
        self.session("theirs", 20004, self.other, LONG_AGO)
        self.session("mine", 20004, self.owner, RECENTLY)
        self.assertNotIn(20004, self.ask().reserved)

    def test_only_the_latest_row_of_a_port_decides(self) -> None:
        self.session("mine", 20005, self.owner, RECENTLY)
        self.session("theirs", 20005, self.other, RECENTLY)
        self.assertIn(20005, self.ask().reserved)

    @override_settings(RELAY_TCP_ANONYMOUS=True, RELAY_ALLOW_ANONYMOUS=True)
    def test_an_anonymous_owner_is_its_address(self) -> None:
        self.session("same-address", 20006, None, RECENTLY, ip=IP)
        self.session("other-address", 20007, None, RECENTLY, ip=OTHER_IP)
        self.session("a-user", 20008, self.owner, RECENTLY)
        reserved = self.ask(token=None).reserved
        self.assertNotIn(20006, reserved)
        self.assertIn(20007, reserved)
        self.assertIn(20008, reserved)

    def test_ports_outside_the_range_are_not_looked_at(self) -> None:
        self.session("theirs", 30001, self.other, RECENTLY)
        self.assertEqual(self.ask().reserved, frozenset())

    def test_the_users_own_reserved_port_is_not_handed_out_at_random(self) -> None:
        ReservedTcpPort.objects.create(port=20001, user=self.owner)
        self.assertIn(20001, self.ask().reserved)

    def test_the_users_own_reserved_port_is_given_when_asked_for(self) -> None:
        ReservedTcpPort.objects.create(port=20001, user=self.owner)
        self.session("theirs", 20001, self.other, RECENTLY)
        tcp = self.ask(port=20001)
        self.assertEqual(tcp.port, 20001)
        self.assertNotIn(20001, tcp.reserved)

    def test_a_name_reregistered_by_its_owner_is_offered_its_port_back(self) -> None:
        self.session("db", 20003, self.owner, RECENTLY)
        self.assertEqual(self.ask("db").preferred, 20003)

    def test_the_latest_row_of_the_name_gives_the_port(self) -> None:
        self.session("db", 20003, self.owner, RECENTLY)
        self.session("db", 20004, self.owner, RECENTLY)
        self.assertEqual(self.ask("db").preferred, 20004)

    def test_no_port_is_offered_back_after_the_quarantine(self) -> None:
        self.session("db", 20003, self.owner, LONG_AGO)
        self.assertEqual(self.ask("db").preferred, 0)

    def test_no_port_is_offered_back_when_the_name_was_another_users_last(self) -> None:
        self.session("db", 20003, self.owner, RECENTLY)
        self.session("db", 20004, self.other, RECENTLY)
        tcp = self.ask("db")
        self.assertEqual(tcp.preferred, 0)
        self.assertIn(20004, tcp.reserved)

    def test_no_port_is_offered_back_when_another_user_had_it_since(self) -> None:
        self.session("db", 20003, self.owner, RECENTLY)
        self.session("theirs", 20003, self.other, RECENTLY)
        tcp = self.ask("db")
        self.assertEqual(tcp.preferred, 0)
        self.assertIn(20003, tcp.reserved)

    def test_no_port_is_offered_back_to_a_new_name(self) -> None:
        self.session("db", 20003, self.owner, RECENTLY)
        self.assertEqual(self.ask().preferred, 0)

    def test_the_quarantine_is_found_in_one_query(self) -> None:
        for port in range(20000, 20010):
            self.session(f"t{port}", port, self.other, RECENTLY)
        with self.assertNumQueries(1):
            quarantined = tcp_ports.quarantined_for(self.owner.pk, IP)
        self.assertEqual(quarantined, frozenset(range(20000, 20010)))
