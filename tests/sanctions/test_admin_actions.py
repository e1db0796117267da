"""The operator's Disconnect, Suspend and Lift in the admin (Django TestCases): the actions
reach a registry on this test's loop through the in-memory channel layer and its control
listener, as runrelay runs them; permissions, the reason form, the admin's history."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.test import TestCase
from harness.accounts import (
    ControlListening,
    bearer,
    fresh_registry,
    make_token,
    make_user,
    tunnel_closed,
)
from harness.waiting import wait_until_async

from relay.protocol import (
    DEFAULT_DISCONNECT_COOLDOWN_S,
    REFUSAL_DISCONNECTED,
    REFUSAL_HEADER,
    REFUSAL_SUSPENDED,
)
from tunnels import suspensions
from tunnels.models import ApiToken, Suspension, TunnelSession

SESSIONS = "/admin/tunnels/tunnelsession/"
TOKENS = "/admin/tunnels/apitoken/"
USERS = "/admin/auth/user/"
SUSPENSIONS = "/admin/tunnels/suspension/"
REASON = "malware download page"


def history(obj: Any) -> list[str]:
    kind = ContentType.objects.get_for_model(obj)
    return list(
        LogEntry.objects.filter(content_type=kind, object_id=str(obj.pk)).values_list(
            "change_message", flat=True
        )
    )


def make_viewer() -> User:
    """Staff who may look at everything here but change nothing."""
    user = make_user("viewer", is_staff=True)
    for codename in ("view_tunnelsession", "view_apitoken", "view_user", "view_suspension"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


class ActionTests(ControlListening):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner = make_user("owner")
        cls.token_row, cls.token = make_token(cls.owner)

    def setUp(self) -> None:
        self.async_client.force_login(self.operator)

    async def _open(self, name: str = "my-app") -> TunnelSession:
        opened = await self.async_client.get(f"/{name}", headers=bearer(self.token))
        self.assertEqual(opened.status_code, 200, opened.content)
        return await TunnelSession.objects.aget(subdomain=name, is_live=True)

    # --- Disconnect -----------------------------------------------------------------------
    async def test_disconnect_refuses_the_name_and_its_owner_for_the_default_cooldown(self):
        async with fresh_registry() as registry:
            listener = await self._listening()
            try:
                row = await self._open()
                posted = await self.async_client.post(
                    SESSIONS, {"action": "disconnect", "_selected_action": [row.pk]}
                )
                self.assertEqual(posted.status_code, 302)
                await tunnel_closed(registry, "my-app")
                again = await self.async_client.get("/my-app", headers=bearer(self.token))
                self.assertEqual(again.status_code, 403)
                self.assertEqual(again[REFUSAL_HEADER], REFUSAL_DISCONNECTED)
                wait_s = int(again["Retry-After"])
                self.assertTrue(DEFAULT_DISCONNECT_COOLDOWN_S - 5 <= wait_s <= 60, wait_s)
                self.assertEqual(
                    again.json()["message"],
                    "my-app was closed by the relay's operator; it can be registered again in "
                    f"{wait_s} s.",
                )
                other = await self.async_client.get("/another-app", headers=bearer(self.token))
                self.assertEqual(other.status_code, 403, "its owner, any name")
                anonymous = await self.async_client.get("/?new")
                self.assertEqual(anonymous.status_code, 200, "other owners are not held")
            finally:
                await self._stop(listener)

    async def test_the_dashboards_disconnect_button_cools_the_name_down_too(self):
        async with fresh_registry() as registry:
            listener = await self._listening()
            try:
                await self._open()
                await self.async_client.post("/admin/dashboard/disconnect", {"name": "my-app"})
                await tunnel_closed(registry, "my-app")
                again = await self.async_client.get("/my-app")  # anyone: refused from memory
                self.assertEqual(again.status_code, 403)
                self.assertEqual(again[REFUSAL_HEADER], REFUSAL_DISCONNECTED)
            finally:
                await self._stop(listener)

    # --- Suspend ----------------------------------------------------------------------------
    async def test_suspend_asks_for_a_reason_then_suspends_closes_and_logs(self):
        async with fresh_registry() as registry:
            listener = await self._listening()
            try:
                row = await self._open()
                form = await self.async_client.post(
                    SESSIONS, {"action": "suspend", "_selected_action": [row.pk]}
                )
                self.assertEqual(form.status_code, 200)
                self.assertContains(form, 'name="reason"')
                self.assertContains(form, "my-app")
                self.assertFalse(await Suspension.objects.aexists(), "nothing before the form")
                done = await self.async_client.post(
                    SESSIONS,
                    {
                        "action": "suspend",
                        "_selected_action": [row.pk],
                        "apply": "Suspend",
                        "reason": REASON,
                    },
                )
                self.assertEqual(done.status_code, 302)
                await tunnel_closed(registry, "my-app")
                made = await Suspension.objects.aget()
                self.assertEqual((made.kind, made.name, made.names), ("name", "my-app", ["my-app"]))
                self.assertEqual(made.created_by_id, self.operator.pk)
                self.assertEqual(registry.sanctions.suspension("my-app"), REASON)
                logged = await sync_to_async(history)(row)
                self.assertEqual(logged, [f"Suspended: {REASON}"])
                refused = await self.async_client.get("/my-app")
                self.assertEqual(refused.status_code, 403)
                self.assertEqual(refused[REFUSAL_HEADER], REFUSAL_SUSPENDED)
                self.assertEqual(
                    refused.json()["message"],
                    f"The tunnel name my-app is suspended by the relay's operator: {REASON}",
                )
            finally:
                await self._stop(listener)

    async def test_an_empty_or_too_long_reason_is_asked_again_and_suspends_nothing(self):
        row = await sync_to_async(TunnelSession.objects.create)(
            subdomain="my-app", client_ip="10.0.0.1", port=1, max_sockets=1
        )
        for reason, problem in (
            ("", "This field is required"),
            ("x" * 101, "Ensure this value has at most 100 characters"),
        ):
            again = await self.async_client.post(
                SESSIONS,
                {"action": "suspend", "_selected_action": [row.pk], "apply": "1", "reason": reason},
            )
            self.assertEqual(again.status_code, 200)
            self.assertContains(again, problem)
        self.assertFalse(await Suspension.objects.aexists())

    async def test_the_form_keeps_all_selected_across_pages(self):
        rows = [
            await sync_to_async(TunnelSession.objects.create)(
                subdomain=name, client_ip="10.0.0.1", port=1, max_sockets=1
            )
            for name in ("first-app", "second-app")
        ]
        # "Select all N": the page's boxes (here one) and select_across.
        chosen = {"action": "suspend", "_selected_action": [rows[0].pk], "select_across": "1"}
        form = await self.async_client.post(SESSIONS, chosen)
        self.assertContains(form, '<input type="hidden" name="select_across" value="1">')
        await self.async_client.post(SESSIONS, {**chosen, "apply": "1", "reason": REASON})
        names = [row.name async for row in Suspension.objects.order_by("name")]
        self.assertEqual(names, ["first-app", "second-app"])

    async def test_suspending_a_token_or_a_user_refuses_its_registrations(self):
        for admin_url, target, what in (
            (TOKENS, self.token_row.pk, "That API token"),
            (USERS, self.owner.pk, "Your account"),
        ):
            async with fresh_registry() as registry:
                listener = await self._listening()
                try:
                    await self._open()
                    await self.async_client.post(
                        admin_url,
                        {
                            "action": "suspend",
                            "_selected_action": [target],
                            "apply": "1",
                            "reason": REASON,
                        },
                    )
                    await tunnel_closed(registry, "my-app")
                    self.assertEqual(registry.sanctions.suspension("my-app"), REASON)
                    refused = await self.async_client.get("/?new", headers=bearer(self.token))
                    self.assertEqual(refused.status_code, 403)
                    self.assertEqual(refused[REFUSAL_HEADER], REFUSAL_SUSPENDED)
                    self.assertEqual(
                        refused.json()["message"],
                        f"{what} is suspended by the relay's operator: {REASON}",
                    )
                    await sync_to_async(suspensions.lift)(Suspension.objects.all())
                finally:
                    await self._stop(listener)
        token = await ApiToken.objects.aget(pk=self.token_row.pk)
        self.assertEqual(await sync_to_async(history)(token), [f"Suspended: {REASON}"])
        self.assertEqual(await sync_to_async(history)(self.owner), [f"Suspended: {REASON}"])

    async def test_the_add_form_suspends_a_user_with_the_names_of_their_live_tunnels(self):
        async with fresh_registry() as registry:
            listener = await self._listening()
            try:
                await self._open()
                added = await self.async_client.post(
                    f"{SUSPENSIONS}add/", {"kind": "user", "user": self.owner.pk, "reason": REASON}
                )
                self.assertEqual(added.status_code, 302, added.content[:2000])
                await tunnel_closed(registry, "my-app")
                made = await Suspension.objects.aget()
                self.assertEqual((made.user_id, made.names), (self.owner.pk, ["my-app"]))
                self.assertEqual(await sync_to_async(history)(self.owner), [f"Suspended: {REASON}"])
            finally:
                await self._stop(listener)

    async def test_the_add_form_needs_the_target_of_its_kind(self):
        refused = await self.async_client.post(
            f"{SUSPENSIONS}add/", {"kind": "token", "user": self.owner.pk, "reason": REASON}
        )
        self.assertEqual(refused.status_code, 200)
        self.assertContains(refused, "A suspension of a token needs the token.")
        self.assertContains(refused, "Leave this empty for a suspension of a token.")
        not_a_name = await self.async_client.post(
            f"{SUSPENSIONS}add/", {"kind": "name", "name": "Evil.Example", "reason": REASON}
        )
        self.assertContains(not_a_name, "Not a tunnel name")
        self.assertFalse(await Suspension.objects.aexists())

    # --- Lift -------------------------------------------------------------------------------
    async def test_lift_frees_the_name_and_is_logged(self):
        async with fresh_registry() as registry:
            listener = await self._listening()
            try:
                (made,) = await sync_to_async(suspensions.suspend_names)(["my-app"], REASON)
                await self._until(lambda: registry.sanctions.suspension("my-app") == REASON)
                lifted = await self.async_client.post(
                    SUSPENSIONS, {"action": "lift", "_selected_action": [made.pk]}
                )
                self.assertEqual(lifted.status_code, 302)
                await self._until(lambda: registry.sanctions.suspension("my-app") is None)
                made = await Suspension.objects.aget(pk=made.pk)
                self.assertIsNotNone(made.lifted_at)
                self.assertEqual(made.lifted_by_id, self.operator.pk)
                self.assertEqual(await sync_to_async(history)(made), [f"Lifted (was: {REASON})"])
                await self._open()
            finally:
                await self._stop(listener)

    async def test_lifting_one_of_two_suspensions_of_a_name_keeps_it_suspended(self):
        async with fresh_registry() as registry:
            listener = await self._listening()
            try:
                first, second = [
                    row
                    for reason in ("first", "second")
                    for row in await sync_to_async(suspensions.suspend_names)(["my-app"], reason)
                ]
                await self._until(lambda: registry.sanctions.suspension("my-app") == "second")
                await sync_to_async(suspensions.lift)([second])
                # A message after it: once obeyed, so was anything the lift sent.
                await sync_to_async(suspensions.suspend_names)(["probe-name"], "probe")
                await self._until(lambda: registry.sanctions.suspension("probe-name") == "probe")
                refused = await self.async_client.get("/my-app", headers=bearer(self.token))
                self.assertEqual(refused.status_code, 403)
                self.assertIn(": first", refused.json()["message"])
                self.assertIsNotNone(registry.sanctions.suspension("my-app"))
            finally:
                await self._stop(listener)

    async def _until(self, predicate: Any) -> None:
        await wait_until_async(predicate, 2.0, "the control message to be obeyed")


class PermissionTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.viewer = make_viewer()
        cls.owner = make_user("owner")
        cls.token_row, _ = make_token(cls.owner)
        cls.session = TunnelSession.objects.create(
            subdomain="my-app", owner=cls.owner, client_ip="10.0.0.1", port=1, max_sockets=1
        )
        cls.suspension = Suspension.objects.create(
            kind=Suspension.NAME, name="my-app", names=["my-app"], reason=REASON
        )

    def setUp(self) -> None:
        self.client.force_login(self.viewer)

    def test_staff_without_the_permission_are_offered_no_suspend_or_lift(self) -> None:
        for url in (SESSIONS, TOKENS, USERS, SUSPENSIONS):
            page = self.client.get(url)
            self.assertEqual(page.status_code, 200, url)
            self.assertNotContains(page, '<option value="suspend"')
            self.assertNotContains(page, '<option value="lift"')

    def test_staff_without_the_permission_cannot_post_them(self) -> None:
        for url, target in (
            (SESSIONS, self.session.pk),
            (TOKENS, self.token_row.pk),
            (USERS, self.owner.pk),
        ):
            self.client.post(
                url,
                {"action": "suspend", "_selected_action": [target], "apply": "1", "reason": "x"},
            )
        self.client.post(SUSPENSIONS, {"action": "lift", "_selected_action": [self.suspension.pk]})
        self.client.post(
            f"{SUSPENSIONS}add/", {"kind": "user", "user": self.owner.pk, "reason": "x"}
        )
        self.assertEqual(Suspension.objects.count(), 1)
        self.assertTrue(Suspension.objects.get().active)
        self.assertFalse(LogEntry.objects.exists())
