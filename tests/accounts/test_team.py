"""Who is on a tunnel owner's team (tunnels/team.py): the bare domain's sign-in and the relay's
check of a visitor's Bearer token (Records.team_member) share the rule."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AnonymousUser, Group
from django.test import TestCase
from django.utils import timezone
from harness.accounts import make_token, make_user

from tunnels import suspensions, team
from tunnels.records import OrmRecords


class TeamTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.teammate = make_user("teammate")
        cls.other = make_user("other")
        cls.staff = make_user("operator", is_staff=True)
        cls.gone = make_user("gone", is_active=False)
        devs = Group.objects.create(name="devs")
        devs.user_set.add(cls.owner, cls.teammate, cls.gone)
        Group.objects.create(name="ops").user_set.add(cls.other, cls.staff)
        cls.tokens = {
            user.username: make_token(user)[1]
            for user in (cls.owner, cls.teammate, cls.other, cls.staff)
        }

    def test_the_owner_staff_and_teammates_may_visit(self) -> None:
        for user in (self.owner, self.teammate, self.staff):
            with self.subTest(user=user.username):
                self.assertTrue(team.may_visit(user, self.owner.pk))

    def test_another_user_an_inactive_teammate_and_an_anonymous_visitor_may_not(self) -> None:
        for user in (self.other, self.gone, AnonymousUser()):
            with self.subTest(user=str(user)):
                self.assertFalse(team.may_visit(user, self.owner.pk))

    def test_a_shared_group_counts_both_ways_and_no_group_is_no_team(self) -> None:
        self.assertTrue(team.may_visit(self.owner, self.teammate.pk))
        self.assertFalse(team.may_visit(self.other, self.teammate.pk))
        loner = make_user("loner")
        self.assertFalse(team.may_visit(self.teammate, loner.pk))

    def test_an_allowed_users_token_names_that_user(self) -> None:
        records = OrmRecords()
        for name in ("owner", "teammate", "operator"):
            with self.subTest(user=name):
                user_id = records.team_member(self.tokens[name], self.owner.pk)
                self.assertEqual(user_id, getattr(self, "staff" if name == "operator" else name).pk)

    def test_another_users_token_or_a_wrong_one_is_none(self) -> None:
        records = OrmRecords()
        for credential in (
            self.tokens["other"],
            "lt_nope",
            "",
            "garbage",
            self.tokens["owner"] + "x",
        ):
            with self.subTest(credential=credential[:8]):
                self.assertIsNone(records.team_member(credential, self.owner.pk))

    def test_a_revoked_or_expired_token_or_a_disabled_user_is_none(self) -> None:
        records = OrmRecords()
        row, text = make_token(self.teammate, name="revoked")
        row.revoke()
        self.assertIsNone(records.team_member(text, self.owner.pk))
        row, text = make_token(self.teammate, name="old")
        row.expires = timezone.now() - timedelta(seconds=1)
        row.save()
        self.assertIsNone(records.team_member(text, self.owner.pk))
        self.teammate.is_active = False
        self.teammate.save()
        self.assertIsNone(records.team_member(self.tokens["teammate"], self.owner.pk))

    def test_asking_does_not_touch_the_tokens_last_use(self) -> None:
        row, text = make_token(self.teammate, name="quiet")
        OrmRecords().team_member(text, self.owner.pk)
        row.refresh_from_db()
        self.assertIsNone(row.last_used)


class SuspendedTeamTests(TestCase):
    """An operator's suspension of a user or a token, or deactivation, ends team access: the
    sign-in's rule, a Bearer token's, and the relay's re-check of a pass holder."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.teammate = make_user("teammate")
        cls.staff = make_user("operator", is_staff=True)
        Group.objects.create(name="devs").user_set.add(cls.owner, cls.teammate)
        cls.token_row, cls.token = make_token(cls.teammate)
        cls.staff_token = make_token(cls.staff)[1]

    def test_a_suspended_user_may_not_visit_even_as_owner_or_staff(self) -> None:
        records = OrmRecords()
        for user, token in ((self.teammate, self.token), (self.staff, self.staff_token)):
            with self.subTest(user=user.username):
                self.assertTrue(team.may_visit(user, self.owner.pk))
                rows = suspensions.suspend_users([user], "abuse")
                self.assertFalse(team.may_visit(user, self.owner.pk))
                self.assertIsNone(records.team_member(token, self.owner.pk))
                self.assertFalse(records.team_user(user.pk, self.owner.pk))
                suspensions.lift(rows)
                self.assertTrue(records.team_user(user.pk, self.owner.pk), "lifted: back in")
        suspensions.suspend_users([self.owner], "abuse")
        self.assertFalse(team.may_visit(self.owner, self.owner.pk))

    def test_a_suspended_token_is_no_bearer_but_its_user_still_signs_in(self) -> None:
        records = OrmRecords()
        self.assertEqual(records.team_member(self.token, self.owner.pk), self.teammate.pk)
        suspensions.suspend_tokens([self.token_row], "leaked")
        self.assertIsNone(records.team_member(self.token, self.owner.pk))
        self.assertTrue(records.team_user(self.teammate.pk, self.owner.pk))

    def test_an_inactive_or_deleted_pass_holder_is_refused_at_the_recheck(self) -> None:
        records = OrmRecords()
        self.assertTrue(records.team_user(self.teammate.pk, self.owner.pk))
        self.teammate.is_active = False
        self.teammate.save()
        self.assertFalse(records.team_user(self.teammate.pk, self.owner.pk))
        self.assertFalse(records.team_user(10**9, self.owner.pk))
