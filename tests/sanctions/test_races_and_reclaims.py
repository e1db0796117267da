"""Fix round: a suspension of a token or user that arrives while a registration is under way
still stops it (the registry checks the ids in memory, and a tunnel closed by a sanction
while its row was written is refused with the sanction, not "in use"); a Disconnect's
owner-wide cool-down holds new tunnels only, never the owner's reclaim of its other live
tunnels; a Suspend or Lift with no channel layer says so."""

from __future__ import annotations

import asyncio
from typing import Any

from django.contrib.auth.models import User
from django.test import TestCase, override_settings
from harness.accounts import bearer, fresh_registry, make_token, make_user, tunnel_closed

from relay import face, protocol
from relay.cluster import control
from relay.pool.errors import RegistrationError
from relay.pool.registry import Registry
from relay.pool.sanctions import Sanctions
from relay.protocol import CLIENT_ID_HEADER, REFUSAL_DISCONNECTED, REFUSAL_HEADER, REFUSAL_SUSPENDED
from tunnels import suspensions
from tunnels.auth import owner_key
from tunnels.models import Suspension

REASON = "phishing"
SUSPENSIONS = "/admin/tunnels/suspension/"


def _refused(registry: Registry, **ids: Any) -> RegistrationError:
    async def go() -> None:
        await registry.register("my-app", "user:7", "127.0.0.1", 10, **ids)

    try:
        asyncio.run(go())
    except RegistrationError as exc:
        return exc
    raise AssertionError("the registration was not refused")


def test_a_suspended_token_or_user_is_refused_by_the_registry_itself() -> None:
    """The message arrives after tunnels/auth.py's database check, before register."""
    for message, ids, what in (
        (face.close_message([], [3], REASON, suspend=True), {"token_id": 3}, "That API token"),
        (
            face.close_message([], [], REASON, user_ids=[7], suspend=True),
            {"user_id": 7},
            "Your account",
        ),
    ):
        registry = Registry()
        control.handle(registry, message)
        refusal = _refused(registry, **ids)
        assert (refusal.status, refusal.reason) == (403, REFUSAL_SUSPENDED)
        assert refusal.message == f"{what} is suspended by the relay's operator: {REASON}"
        assert not registry.tunnels
        control.handle(registry, face.lift_message([], [3], [7]))
        assert registry.sanctions.refusal("my-app", "", user_id=7, token_id=3) is None


def test_suspended_ids_are_bounded_and_replaced_at_start(monkeypatch: Any) -> None:
    monkeypatch.setattr(protocol, "SUSPENDED_NAMES_REMEMBERED", 5)
    sanctions = Sanctions()
    sanctions.suspend((), REASON, token_ids=range(20), user_ids=[True, "7", 7])
    assert len(sanctions.tokens) == 5
    assert sanctions.users == {7: REASON}, "bools and strings are no ids"
    sanctions.replace({"my-app": "a"}, {9: "b"}, {8: "c"})
    assert (sanctions.suspended, sanctions.tokens, sanctions.users) == (
        {"my-app": "a"},
        {9: "b"},
        {8: "c"},
    )


class RegistrationRaceTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.token_row, cls.token = make_token(cls.owner)

    async def test_a_suspension_during_the_row_write_is_the_refusal_not_in_use(self):
        async with fresh_registry() as registry:
            write = registry.holders.open_session

            async def suspended_meanwhile(*args: Any, **kwargs: Any) -> int:
                control.handle(
                    registry,
                    face.close_message([], [], REASON, user_ids=[self.owner.pk], suspend=True),
                )
                return await write(*args, **kwargs)

            registry.holders.open_session = suspended_meanwhile  # type: ignore[method-assign]
            answer = await self.async_client.get("/my-app", headers=bearer(self.token))
            self.assertEqual(answer.status_code, 403, answer.content)
            self.assertEqual(answer[REFUSAL_HEADER], REFUSAL_SUSPENDED)
            self.assertEqual(
                answer.json()["message"],
                f"Your account is suspended by the relay's operator: {REASON}",
            )
            self.assertIsNone(registry.get("my-app"))

    async def test_the_owner_cooldown_spares_the_owners_other_live_tunnels(self):
        headers = {**bearer(self.token), CLIENT_ID_HEADER: "client-one-xyz"}
        async with fresh_registry() as registry:
            for name in ("my-app", "other-app"):
                opened = await self.async_client.get(f"/{name}", headers=headers)
                self.assertEqual(opened.status_code, 200, opened.content)
            control.handle(
                registry,
                face.close_message(
                    ["my-app"],
                    [],
                    "disconnected by the operator",
                    cooldown_s=60,
                    owners={"my-app": owner_key(self.owner.pk)},
                ),
            )
            await tunnel_closed(registry, "my-app")
            again = await self.async_client.get("/other-app", headers=headers)
            self.assertEqual(again.status_code, 200, "its own live tunnel is reclaimed")
            for name in ("my-app", "third-app"):
                refused = await self.async_client.get(f"/{name}", headers=headers)
                self.assertEqual(refused.status_code, 403, name)
                self.assertEqual(refused[REFUSAL_HEADER], REFUSAL_DISCONNECTED)
            anyone = await self.async_client.get("/my-app")
            self.assertEqual(anyone[REFUSAL_HEADER], REFUSAL_DISCONNECTED, "the name, for anyone")
            self.assertTrue(
                anyone.json()["message"].startswith(
                    "my-app was closed by the relay's operator; it can be registered again in "
                ),
                anyone.json(),
            )


@override_settings(CHANNEL_LAYERS={})
class NoChannelLayerTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner: User = make_user("owner")

    def test_suspend_and_lift_warn_that_no_relay_was_told(self) -> None:
        self.client.force_login(self.operator)
        added = self.client.post(
            f"{SUSPENSIONS}add/", {"kind": "name", "name": "my-app", "reason": REASON}, follow=True
        )
        self.assertContains(added, "no relay was told: live tunnels keep running")
        self.assertContains(added, "restart the relays")
        row = Suspension.objects.get()
        lifted = self.client.post(
            SUSPENSIONS, {"action": "lift", "_selected_action": [row.pk]}, follow=True
        )
        self.assertContains(lifted, "the lifted names still show the suspension page")

    @override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    )
    def test_no_warning_when_a_layer_carries_it(self) -> None:
        self.client.force_login(self.operator)
        added = self.client.post(
            f"{SUSPENSIONS}add/", {"kind": "name", "name": "my-app", "reason": REASON}, follow=True
        )
        self.assertNotContains(added, "no relay was told")
        suspensions.lift(Suspension.objects.all())
