"""A plan's name is shown to users (by our lt in a terminal, in refusals, on the account
page): the admin's plan form refuses one with a control, escape or bidi character, a line
break (tunnels/models.py validate_plan_name); letters of any script, digits,
spaces and `-_.` are fine."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict
from django.test import RequestFactory, TestCase
from harness.accounts import make_user

from tunnels.models import Plan

REFUSED = [
    "esc\x1b[31mRED\x1b]0;PWNED\x07\u202eevil",
    "two\nlines",
    "tab\there",
    "\u2066isolated",
    "",
]
ACCEPTED = ["Free", "team-plan_2.0", "Équipe 5", "無料"]


class PlanNameTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.plan = Plan.objects.create(name="free")

    def errors(self, name: str) -> list[str] | None:
        request = RequestFactory().get("/admin/")
        request.user = self.operator
        form_class = admin.site._registry[Plan].get_form(request, self.plan)
        form = form_class(data={**model_to_dict(self.plan), "name": name}, instance=self.plan)
        return None if form.is_valid() else form.errors.get("name")

    def test_the_admins_plan_form_refuses_a_name_a_terminal_would_act_on(self) -> None:
        for name in REFUSED:
            errors = self.errors(name)
            assert errors, name
            if name:
                self.assertIn("letters, digits, spaces and - _ . only", errors[0])

    def test_a_leading_or_trailing_space_is_refused_where_no_form_strips_it(self) -> None:
        for name in (" Free", "Free "):
            with self.assertRaises(ValidationError):
                Plan(name=name).full_clean()

    def test_names_in_any_script_with_digits_spaces_and_dashes_are_fine(self) -> None:
        for name in ACCEPTED:
            self.assertIsNone(self.errors(name), name)
