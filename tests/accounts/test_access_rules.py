"""Our lt's visitor rules header, parsed strictly, and the operator's policy combined with it:
policy wins, a client only tightens (tunnels/access.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.protocol import (
    MAX_ACCESS_HEADER_BYTES,
    MAX_BASIC_AUTH_CHARS,
    MAX_BASIC_AUTH_USERS,
    MAX_CIDRS,
)
from tunnels.access import (
    ANONYMOUS_TEAM,
    BadRules,
    ClientRules,
    Policy,
    parse_header,
    visitor_rules,
)

SECRET = "s3cret-Pa55"


def header(**rules: object) -> str:
    return json.dumps(rules, separators=(",", ":"))


def refusal(value: str) -> str:
    with pytest.raises(BadRules) as caught:
        parse_header(value)
    return caught.value.message


# --- the header ------------------------------------------------------------------------------
def test_no_header_means_no_rules() -> None:
    assert parse_header(None) == ClientRules()


def test_every_key_is_read_and_networks_are_normalised() -> None:
    rules = parse_header(
        header(
            basic_auth=["alice:" + SECRET, "bob:pw:with:colons"],
            cidr_allow=["10.1.2.3/8", "2001:db8::1/32", "198.51.100.7"],
            cidr_deny=["10.9.0.0/16"],
            private=True,
        )
    )
    assert rules.basic_auth == ("alice:" + SECRET, "bob:pw:with:colons")
    assert rules.cidr_allow == ("10.0.0.0/8", "2001:db8::/32", "198.51.100.7/32")
    assert rules.cidr_deny == ("10.9.0.0/16",)
    assert rules.private is True


def test_the_repr_never_shows_a_password() -> None:
    assert SECRET not in repr(parse_header(header(basic_auth=["alice:" + SECRET])))


def test_non_ascii_passwords_arrive_as_sent() -> None:
    raw = header(basic_auth=["zoë:pässwörd"]).encode()  # not \u-escaped: raw UTF-8 bytes
    assert parse_header(raw.decode("latin-1")).basic_auth == ("zoë:pässwörd",)
    escaped = json.dumps({"basic_auth": ["zoë:pässwörd"]})  # \u-escaped
    assert parse_header(escaped).basic_auth == ("zoë:pässwörd",)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "not JSON"),
        ("basic_auth=alice:pw", "not JSON"),
        ("[]", "must be a JSON object, not a list"),
        ('"x"', "not a string"),
        (header(password=["x"]), "Unknown key(s)"),
        ('{"private":true,"private":false}', "appears twice"),
        (header(private="yes"), '"private" must be true or false, not a string'),
        (header(private=1), '"private" must be true or false, not a number'),
        (header(basic_auth="alice:pw"), '"basic_auth" must be a list of strings, not a string'),
        (header(basic_auth=[["alice:pw"]]), "entry 1 must be a string, not a list"),
        (header(cidr_allow=[10]), '"cidr_allow" entry 1 must be a string, not a number'),
        (header(cidr_deny={"a": 1}), '"cidr_deny" must be a list of strings, not an object'),
        (header(cidr_allow=["10.0.0.0/33"]), "is not an address or network"),
        (header(cidr_deny=["example.com"]), "is not an address or network"),
        (header(cidr_allow=[""]), "entry 1 is not an address or network"),
        (header(cidr_allow=["1" * 200]), "entry 1 is not an address or network"),
        ("[" * 4000 + "]" * 4000, "nested too deeply"),
        ("[" * 8000, "nested too deeply"),
        ('{"private":' + "9" * 5000 + "}", "not JSON"),
    ],
)
def test_bad_headers_are_refused_saying_what_is_wrong(value: str, says: str) -> None:
    assert says in refusal(value)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("alice" + SECRET, 'must be "user:password" (it has no ":")'),
        (":" + SECRET, "has an empty user name"),
        ("alice:", "has an empty password"),
        ("alice:" + SECRET + "\n", "control character"),
        ("alice:" + SECRET + "x" * MAX_BASIC_AUTH_CHARS, "longer than"),
    ],
)
def test_a_bad_basic_auth_entry_is_named_by_position_never_by_its_password(
    entry: str, says: str
) -> None:
    message = refusal(header(basic_auth=["ok:fine", entry]))
    assert says in message
    assert "basic_auth entry 2" in message
    assert SECRET not in message


def test_the_same_user_twice_is_refused() -> None:
    assert "earlier entry" in refusal(header(basic_auth=["a:1", "a:2"]))


def test_the_bounds_are_enforced() -> None:
    users = [f"u{i}:pw" for i in range(MAX_BASIC_AUTH_USERS + 1)]
    assert f"At most {MAX_BASIC_AUTH_USERS} basic-auth users" in refusal(header(basic_auth=users))
    many = [f"10.0.{i}.0/24" for i in range(MAX_CIDRS)]
    assert len(parse_header(header(cidr_allow=many)).cidr_allow) == MAX_CIDRS
    assert f"At most {MAX_CIDRS} networks" in refusal(
        header(cidr_allow=many, cidr_deny=["192.0.2.0/24"])
    )
    assert "bytes; at most" in refusal(header(cidr_allow=["10.0.0.0/8"] * MAX_ACCESS_HEADER_BYTES))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_header_text_never_raises_anything_but_a_clear_refusal(value: str) -> None:
    try:
        parse_header(value)
    except BadRules as exc:
        assert exc.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["basic_auth", "cidr_allow", "cidr_deny", "private", "other"]),
        json_values,
    )
)
def test_arbitrary_json_objects_are_parsed_or_refused_never_raise(value: dict) -> None:
    try:
        rules = parse_header(json.dumps(value))
    except BadRules as exc:
        assert exc.message
    else:
        assert all(":" in entry for entry in rules.basic_auth)


# --- combining with policy ---------------------------------------------------------------------
NO_RULES = ClientRules()


def combine(
    client: ClientRules = NO_RULES,
    *,
    plan: Policy | None = None,
    reserved: Policy | None = None,
    anonymous: bool = False,
    interstitial: str = "anonymous",
):
    return visitor_rules(
        client,
        anonymous=anonymous,
        owner_label="" if anonymous else "owner",
        plan=plan,
        reserved=reserved,
        interstitial=interstitial,
    )


def test_no_rules_and_no_policy_give_empty_rules_for_an_account() -> None:
    rules = combine()
    assert rules.empty
    assert rules.owner_label == "owner"


def test_each_sources_allow_list_is_kept_apart_so_a_client_cannot_widen_the_plans() -> None:
    rules = combine(
        ClientRules(cidr_allow=("0.0.0.0/0", "::/0")),
        plan=Policy(cidr_allow=("203.0.113.0/24",)),
        reserved=Policy(cidr_allow=("203.0.113.0/28",)),
    )
    assert rules.cidr_allow == (("0.0.0.0/0", "::/0"), ("203.0.113.0/24",), ("203.0.113.0/28",))


def test_deny_lists_are_joined() -> None:
    rules = combine(
        ClientRules(cidr_deny=("10.0.0.0/8",)),
        plan=Policy(cidr_deny=("2001:db8::/32", "10.0.0.0/8")),
        reserved=Policy(cidr_deny=("192.0.2.0/24",)),
    )
    assert rules.cidr_deny == ("10.0.0.0/8", "2001:db8::/32", "192.0.2.0/24")


def test_team_only_comes_from_the_client_or_any_policy() -> None:
    assert combine(ClientRules(private=True)).team
    assert combine(plan=Policy(visitor_auth="team")).team
    assert combine(reserved=Policy(visitor_auth="team")).team
    # A client's password does not lift a team-only policy.
    assert combine(ClientRules(basic_auth=("a:b",)), plan=Policy(visitor_auth="team")).team


def test_required_auth_is_a_password_from_the_client_or_else_team_only() -> None:
    assert combine(plan=Policy(visitor_auth="required")).team
    with_password = combine(
        ClientRules(basic_auth=("a:b",)), reserved=Policy(visitor_auth="required")
    )
    assert not with_password.team
    assert with_password.basic_auth == ("a:b",)


def test_an_anonymous_client_cannot_ask_for_team_only() -> None:
    with pytest.raises(BadRules) as caught:
        combine(ClientRules(private=True), anonymous=True)
    assert caught.value.message == ANONYMOUS_TEAM
    assert "lt login" in ANONYMOUS_TEAM


def test_the_warning_page_follows_the_reserved_name_then_the_plan_then_the_setting() -> None:
    assert combine(anonymous=True).warning  # the default: anonymous tunnels
    assert combine(anonymous=True).owner_label == ""
    assert not combine().warning
    assert combine(interstitial="all").warning
    assert not combine(anonymous=True, interstitial="off").warning
    assert combine(plan=Policy(warning_page="on"), interstitial="off").warning
    assert not combine(plan=Policy(warning_page="off"), interstitial="all").warning
    assert combine(plan=Policy(warning_page="off"), reserved=Policy(warning_page="on")).warning
    assert not combine(plan=Policy(warning_page="on"), reserved=Policy(warning_page="off")).warning
    assert combine(plan=Policy(warning_page="on"), reserved=Policy(warning_page="")).warning


policies = st.builds(
    Policy,
    visitor_auth=st.sampled_from(["", "required", "team"]),
    cidr_allow=st.lists(st.sampled_from(["10.0.0.0/8", "192.0.2.0/24", "::/0"]), max_size=2).map(
        tuple
    ),
    cidr_deny=st.lists(st.sampled_from(["10.1.0.0/16", "2001:db8::/32"]), max_size=2).map(tuple),
)
clients = st.builds(
    ClientRules,
    basic_auth=st.sampled_from([(), ("a:b",)]),
    cidr_allow=st.lists(st.sampled_from(["0.0.0.0/0", "10.0.0.0/8"]), max_size=2).map(tuple),
    cidr_deny=st.lists(st.sampled_from(["10.2.0.0/16"]), max_size=1).map(tuple),
    private=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(clients, st.none() | policies, st.none() | policies)
def test_a_client_never_loosens_a_policy(
    client: ClientRules, plan: Policy | None, reserved: Policy | None
) -> None:
    without_client = combine(plan=plan, reserved=reserved)
    rules = combine(client, plan=plan, reserved=reserved)
    for source in without_client.cidr_allow:  # every policy allow list still applies
        assert source in rules.cidr_allow
    assert set(without_client.cidr_deny) <= set(rules.cidr_deny)
    if any(p is not None and p.visitor_auth == "team" for p in (plan, reserved)):
        assert rules.team
    if any(p is not None and p.visitor_auth == "required" for p in (plan, reserved)):
        assert rules.team or rules.basic_auth
