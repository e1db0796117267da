"""The gate's parts fed values and ASGI scopes (no sockets): Access decisions, signed passes,
the relay's cookies kept from the app, sign-out, and the gate's answers per rule."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import threading
import time

import pytest
from django.test import override_settings
from harness.waiting import wait_until_async
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import face, protocol, records, visitor_pass
from relay.cluster import control
from relay.headers import response_headers, strip_relay_cookies
from relay.pool.access import Access, VisitorRules
from relay.pool.registry import Registry
from relay.protocol import CONTINUE_PATH, local_path
from relay.proxy import gate, team
from relay.proxy.gate import Answer

NAME = "alpha"


def scope(
    path: str = "/",
    headers: list[tuple[bytes, bytes]] = (),
    method: str = "GET",
    client: str = "192.0.2.1",
    query: bytes = b"",
    kind: str = "http",
) -> dict:
    return {
        "type": kind,
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": list(headers),
        "client": (client, 50000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
    }


class TeamRecords:
    """The records port's two team questions, answered from sets the test fills (the
    database side; the gate, its caches and limits are the real ones). Counts the calls."""

    def __init__(self, real) -> None:
        self.real = real
        self.users: set[tuple[int, int]] = {(9, 1), (21, 11)}  # (holder, owner) on the team
        self.tokens: dict[str, int] = {}  # token -> user id allowed
        self.calls = 0
        self.hold: threading.Event | None = None

    def team_user(self, user_id: int, owner_user_id: int) -> bool:
        self.calls += 1
        return (user_id, owner_user_id) in self.users

    def team_member(self, credential: str, owner_user_id: int) -> int | None:
        self.calls += 1
        if self.hold is not None:
            self.hold.wait(5)
        return self.tokens.get(credential)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


@pytest.fixture(autouse=True)
def team_records(monkeypatch):
    real = records.get()
    fake = TeamRecords(real)
    records.install(fake)
    monkeypatch.setattr(team, "lookups", team.Lookups())
    try:
        yield fake
    finally:
        records.install(real)


def check(access: Access, s: dict, owner: int | None = 1):
    return asyncio.run(gate.check(NAME, owner, access, s, None))


# --- Access ----------------------------------------------------------------------------------
def test_cidr_allow_groups_must_each_admit_and_deny_wins():
    access = Access(
        VisitorRules(
            cidr_allow=(("10.0.0.0/8", "2001:db8::/32"), ("10.1.0.0/16", "2001:db8:1::/48")),
            cidr_deny=("10.1.2.0/24",),
        )
    )
    assert access.admits("10.1.3.4")
    assert not access.admits("10.2.0.1")  # in the first list, not the second
    assert not access.admits("10.1.2.9")  # denied
    assert access.admits("2001:db8:1::5")
    assert not access.admits("2001:db8:2::5")
    assert not access.admits("not an address")
    assert not access.admits("")


def test_an_ipv4_mapped_ipv6_visitor_is_its_ipv4_address():
    allow = Access(VisitorRules(cidr_allow=(("203.0.113.0/24",),)))
    deny = Access(VisitorRules(cidr_deny=("203.0.113.0/24",)))
    assert allow.admits("::ffff:203.0.113.5")
    assert not deny.admits("::ffff:203.0.113.5")
    assert deny.admits("::ffff:198.51.100.1")


def test_decisions_are_cached_but_bounded():
    access = Access(VisitorRules(cidr_deny=("10.0.0.0/8",)))
    for n in range(10_000):
        access.admits(f"172.16.{n // 256}.{n % 256}")
    assert len(access._decided) <= 4096
    assert not access.admits("10.0.0.1")


def test_the_visitor_address_behind_a_trusted_proxy_is_the_forwarded_one():
    access = Access(VisitorRules(cidr_allow=(("2001:db8::/32",),)))
    forwarded = [(b"x-forwarded-for", b"2001:db8::7")]
    with override_settings(RELAY_TRUSTED_PROXIES=[ipaddress.ip_network("10.9.9.9")]):
        assert not isinstance(check(access, scope(headers=forwarded, client="10.9.9.9")), Answer)
        refused = check(access, scope(headers=forwarded, client="10.9.9.8"))
    assert isinstance(refused, Answer) and refused.status == 403


def basic(pair: bytes) -> bytes:
    return b"Basic " + base64.b64encode(pair)


def test_basic_auth_is_kept_hashed_and_checked_against_every_user():
    rules = VisitorRules(basic_auth=("ann:one", "bob:two:three"))
    access = Access(rules)
    assert "one" not in repr(rules)
    assert all(b"one" not in digest for digest in access.basic)
    assert access.basic_ok(basic(b"ann:one"))
    assert access.basic_ok(basic(b"bob:two:three"))
    assert access.basic_ok(b"bAsIc " + base64.b64encode(b"ann:one"))
    for wrong in (
        basic(b"ann:two"),
        basic(b"ann:one "),
        b"Bearer x",
        b"Basic !!!",
        b"Basic " + b"A" * 5000,
        b"",
        None,
    ):
        assert not access.basic_ok(wrong)


@settings(deadline=None)  # correctness, not speed: the test machine is shared
@given(st.binary(max_size=300))
def test_any_authorization_value_is_answered_without_raising(value):
    access = Access(VisitorRules(basic_auth=("ann:one",)))
    assert access.basic_ok(value) is False  # never raises; only "ann:one" in base64 passes


# --- signed passes ---------------------------------------------------------------------------
def test_a_pass_verifies_only_for_its_kind_and_name_and_until_it_expires():
    ticket = visitor_pass.issue_ticket(NAME, 5, owner_user_id=None)
    found = visitor_pass.verify(ticket, visitor_pass.TICKET, NAME)
    assert found is not None and found.user_id == 5 and found.nonce
    assert visitor_pass.verify(ticket, visitor_pass.ACCESS, NAME) is None
    assert visitor_pass.verify(ticket, visitor_pass.TICKET, "beta") is None
    assert visitor_pass.verify(ticket, visitor_pass.TICKET, NAME, now=time.time() + 61) is None
    with override_settings(SECRET_KEY="another key entirely, as on another relay's site"):
        assert visitor_pass.verify(ticket, visitor_pass.TICKET, NAME) is None


@settings(deadline=None)  # correctness, not speed: the test machine is shared
@given(st.one_of(st.text(max_size=600), st.binary(max_size=600)))
def test_any_string_that_is_not_one_we_signed_is_refused_without_raising(value):
    for kind in (visitor_pass.TICKET, visitor_pass.ACCESS, visitor_pass.WARNED):
        assert visitor_pass.verify(value, kind, NAME) is None


@settings(deadline=None)  # correctness, not speed: the test machine is shared
@given(st.integers(min_value=0, max_value=200), st.characters(codec="ascii"))
def test_any_change_to_a_signed_value_is_refused(position, replacement):
    value = visitor_pass.sign(visitor_pass.ACCESS, NAME, 3, 3600)
    index = position % len(value)
    changed = value[:index] + replacement + value[index + 1 :]
    if changed != value:
        found = visitor_pass.verify(changed, visitor_pass.ACCESS, NAME)
        # Base64 has a few spellings of the last characters' unused bits; they decode to the
        # same bytes, so the pass is the same pass: never another one.
        assert found is None or found == visitor_pass.verify(value, visitor_pass.ACCESS, NAME)


def test_a_ticket_is_spent_once_and_the_memory_is_bounded():
    spent = visitor_pass.SpentTickets(limit=2)
    tickets = [
        visitor_pass.verify(
            visitor_pass.issue_ticket(NAME, 1, owner_user_id=None), visitor_pass.TICKET, NAME
        )
        for _ in range(3)
    ]
    assert spent.spend(tickets[0]) and not spent.spend(tickets[0])
    assert spent.spend(tickets[1])
    assert not spent.spend(tickets[2])  # full of unexpired tickets: refuse, never forget
    assert spent.spend(tickets[2], now=time.time() + 120)  # the others expired


def test_signing_out_ends_older_passes_not_newer_ones():
    before = visitor_pass.verify(
        visitor_pass.sign(visitor_pass.ACCESS, NAME, 42, 3600), visitor_pass.ACCESS, NAME
    )
    registry = Registry()
    control.handle(registry, visitor_pass.signout_message(42, now=time.time() + 0.01))
    control.handle(registry, {"type": "visitor.signout", "user_id": "42", "at_ms": "x"})
    after = visitor_pass.verify(
        visitor_pass.sign(visitor_pass.ACCESS, NAME, 42, 3600, now=time.time() + 0.02),
        visitor_pass.ACCESS,
        NAME,
    )
    assert not visitor_pass.signed_out.still_in(before)
    assert visitor_pass.signed_out.still_in(after)


def test_signed_out_users_are_bounded():
    memory = visitor_pass.SignedOut(limit=3)
    now_ms = int(time.time() * 1000)
    for user in range(10):
        memory.note(user, now_ms)
    assert len(memory) == 3


# --- cookies ---------------------------------------------------------------------------------
@settings(deadline=None)  # correctness, not speed: the test machine is shared
@given(
    st.lists(
        st.tuples(
            st.text("abcdefghij_", min_size=1, max_size=8),
            st.text("xyz019=%", max_size=8),
            st.sampled_from(["; ", ";", ";  "]),
        ),
        max_size=6,
    ),
    st.lists(st.sampled_from([b"tunnelsite_access", b"tunnelsite_warned"]), max_size=2),
)
def test_stripping_the_relays_cookies_keeps_the_others_exactly(others, ours):
    pieces = [f"{k}={v}".encode() for k, v, _ in others]
    seps = [s.encode() for _, _, s in others]
    mixed = b""
    for index, piece in enumerate(pieces):
        mixed += (seps[index] if index else b"") + piece
    header = mixed
    for name in ours:
        header = name + b"=v; " + header if header else name + b"=v"
    assert strip_relay_cookies(header).rstrip(b"; ") == mixed.rstrip(b"; ")


def test_the_apps_set_cookie_for_the_relays_cookies_is_dropped():
    kept = response_headers(
        [
            (b"set-cookie", b"tunnelsite_access=forged; Path=/"),
            (b"set-cookie", b" Tunnelsite_Warned=1"),
            (b"set-cookie", b"session=abc; HttpOnly"),
            (b"content-type", b"text/plain"),
        ]
    )
    assert kept == [(b"set-cookie", b"session=abc; HttpOnly"), (b"content-type", b"text/plain")]


# --- next ------------------------------------------------------------------------------------
@settings(deadline=None)  # correctness, not speed: the test machine is shared
@given(st.text(max_size=50))
def test_next_is_a_local_path_or_slash(text):
    result = local_path(text)
    assert result == "/" or (
        result == text
        and result.startswith("/")
        and not result.startswith(("//", "/\\"))
        and result.isascii()
        and " " not in result
    )


@pytest.mark.parametrize(
    "text",
    [
        "//evil.example/",
        "/\\evil.example/",
        "https://evil.example/",
        "/\t/evil",
        "/a b",
        "/é",
        "/" + "a" * 5000,
        "",
        "evil",
    ],
)
def test_local_path_refuses_other_hosts_and_odd_characters(text):
    assert local_path(text) == "/"


def test_local_path_keeps_a_path_with_its_query():
    assert local_path("/a/b?c=d&e=%2F#f") == "/a/b?c=d&e=%2F#f"


# --- the gate's order and answers -------------------------------------------------------------
def test_the_gate_checks_cidr_before_basic_auth_and_strips_what_satisfied_it():
    access = Access(VisitorRules(basic_auth=("a:b",), cidr_allow=(("192.0.2.0/24",),)))
    outside = check(
        access, scope(client="198.51.100.1", headers=[(b"authorization", basic(b"a:b"))])
    )
    assert isinstance(outside, Answer) and outside.status == 403
    passed = check(
        access,
        scope(
            headers=[(b"authorization", basic(b"a:b")), (b"cookie", b"tunnelsite_warned=x; k=v")]
        ),
    )
    assert not isinstance(passed, Answer)
    assert passed["headers"] == [(b"cookie", b"k=v")]
    two = check(
        access,
        scope(headers=[(b"authorization", basic(b"a:b")), (b"authorization", basic(b"a:b"))]),
    )
    assert isinstance(two, Answer) and two.status == 401


def test_a_tunnel_with_only_the_warning_forwards_the_same_scope_untouched():
    access = Access(VisitorRules(warning=True))
    plain = scope(headers=[(b"user-agent", b"curl/8"), (b"cookie", b"a=1")])
    assert check(access, plain) is plain
    post = scope(method="POST", headers=[(b"cookie", b"tunnelsite_warned=x")])
    assert check(access, post)["headers"] == []


def test_a_team_only_tunnel_without_an_owner_refuses_every_bearer_token():
    access = Access(VisitorRules(team=True))
    answer = check(access, scope(headers=[(b"authorization", b"Bearer abc")]), owner=None)
    assert isinstance(answer, Answer) and answer.status == 401


def test_basic_auth_and_team_only_together_need_both():
    access = Access(VisitorRules(basic_auth=("a:b",), team=True))
    cookie = (
        b"tunnelsite_access="
        + visitor_pass.sign(visitor_pass.ACCESS, NAME, 9, 60, owner_user_id=1).encode()
    )
    only_basic = check(access, scope(headers=[(b"authorization", basic(b"a:b"))]))
    only_cookie = check(access, scope(headers=[(b"cookie", cookie)]))
    both = check(access, scope(headers=[(b"authorization", basic(b"a:b")), (b"cookie", cookie)]))
    assert isinstance(only_basic, Answer) and only_basic.status == 401
    assert isinstance(only_cookie, Answer) and only_cookie.status == 401
    assert not isinstance(both, Answer) and both["headers"] == []


def test_the_access_cookie_is_secure_behind_an_https_public_scheme():
    access = Access(VisitorRules(team=True))
    query = b"ticket=" + visitor_pass.issue_ticket(NAME, 3, owner_user_id=1).encode() + b"&next=/a"
    with override_settings(RELAY_PUBLIC_SCHEME="https"):
        answer = check(access, scope(path="/.well-known/tunnelsite/ticket", query=query))
    cookie = dict(answer.headers)[b"set-cookie"]
    assert cookie.endswith(b"; Secure")


# --- one name, two owners in turn --------------------------------------------------------------
def test_a_pass_into_one_owners_tunnel_opens_nothing_when_another_owner_has_the_name():
    access = Access(VisitorRules(team=True))
    owner_a, owner_b = 11, 12
    mate_of_a = 21
    ticket = visitor_pass.issue_ticket(NAME, mate_of_a, owner_user_id=owner_a)
    unspent = visitor_pass.issue_ticket(NAME, mate_of_a, owner_user_id=owner_a)
    ticket_path = "/.well-known/tunnelsite/ticket"
    exchanged = check(
        access, scope(path=ticket_path, query=b"ticket=" + ticket.encode()), owner=owner_a
    )
    assert exchanged.status == 303
    cookie = dict(exchanged.headers)[b"set-cookie"].split(b";")[0]
    admitted = check(access, scope(headers=[(b"cookie", cookie)]), owner=owner_a)
    assert not isinstance(admitted, Answer)
    # A's tunnel closes; B registers the name, team-only too.
    with_cookie = check(access, scope(headers=[(b"cookie", cookie)]), owner=owner_b)
    assert isinstance(with_cookie, Answer) and with_cookie.status == 401
    with_ticket = check(
        access, scope(path=ticket_path, query=b"ticket=" + unspent.encode()), owner=owner_b
    )
    assert isinstance(with_ticket, Answer) and with_ticket.status == 403
    assert "earlier owner" in with_ticket.message
    # ...nor on an anonymous tunnel of that name.
    anonymous = check(access, scope(headers=[(b"cookie", cookie)]), owner=None)
    assert isinstance(anonymous, Answer) and anonymous.status == 401


def test_face_issue_ticket_needs_the_owner_by_keyword():
    with pytest.raises(TypeError):
        face.issue_ticket(NAME, 5, 11)  # type: ignore[misc]
    found = visitor_pass.verify(
        face.issue_ticket(NAME, 5, owner_user_id=11), visitor_pass.TICKET, NAME, owner_user_id=11
    )
    assert found is not None and (found.user_id, found.owner_user_id) == (5, 11)


def test_the_pass_key_is_derived_once_and_again_when_the_secret_key_changes(monkeypatch):
    value = visitor_pass.sign(visitor_pass.ACCESS, NAME, 3, 60)
    derived = []
    real = hashlib.sha256

    def counting(data=b""):
        if data.startswith(b"tunnelsite.visitor-pass|"):
            derived.append(data)
        return real(data)

    monkeypatch.setattr(visitor_pass.hashlib, "sha256", counting)
    for _ in range(5):
        assert visitor_pass.verify(value, visitor_pass.ACCESS, NAME) is not None
    assert derived == []  # derived before, kept since
    with override_settings(SECRET_KEY="another key entirely"):
        assert visitor_pass.verify(value, visitor_pass.ACCESS, NAME) is None
        assert visitor_pass.verify(value, visitor_pass.ACCESS, NAME) is None
    assert len(derived) == 1
    assert visitor_pass.verify(value, visitor_pass.ACCESS, NAME) is not None
    assert len(derived) == 2


# --- full memories ---------------------------------------------------------------------------
def test_a_full_ticket_memory_says_so_and_warns_once_not_per_request(monkeypatch, caplog):
    access = Access(VisitorRules(team=True))
    monkeypatch.setattr(visitor_pass, "spent_tickets", visitor_pass.SpentTickets(limit=1))
    first, second, third = (visitor_pass.issue_ticket(NAME, 3, owner_user_id=1) for _ in range(3))
    path = "/.well-known/tunnelsite/ticket"
    assert check(access, scope(path=path, query=b"ticket=" + first.encode())).status == 303
    with caplog.at_level("WARNING", logger="relay.visitor_pass"):
        for ticket in (second, third):
            answer = check(access, scope(path=path, query=b"ticket=" + ticket.encode()))
            assert answer.status == 503
            assert "too many sign-ins" in answer.message
            assert dict(answer.headers)[b"retry-after"] == b"60"
    warnings = [r for r in caplog.records if r.name == "relay.visitor_pass"]
    assert len(warnings) == 1
    assert second not in caplog.text and third not in caplog.text
    # A reused ticket is still "not valid", not "full".
    reused = check(access, scope(path=path, query=b"ticket=" + first.encode()))
    assert reused.status == 403 and "not valid" in reused.message


def test_a_full_signed_out_memory_fails_closed_for_passes_older_than_what_it_dropped():
    memory = visitor_pass.SignedOut(limit=2)
    issued = time.time()
    old_pass = visitor_pass.verify(
        visitor_pass.sign(visitor_pass.ACCESS, NAME, 1, 3600, now=issued), visitor_pass.ACCESS, NAME
    )
    bystander = visitor_pass.verify(
        visitor_pass.sign(visitor_pass.ACCESS, NAME, 99, 3600, now=issued),
        visitor_pass.ACCESS,
        NAME,
    )
    later_ms = int((issued + 1) * 1000)
    memory.note(1, later_ms)  # user 1 signs out
    assert not memory.still_in(old_pass)
    memory.note(2, later_ms + 1)
    memory.note(3, later_ms + 2)  # full: user 1's sign-out is dropped
    assert len(memory) == 2
    assert not memory.still_in(old_pass)  # still refused: the watermark
    assert not memory.still_in(bystander)  # and so is every pass from before it
    fresh = visitor_pass.verify(
        visitor_pass.sign(visitor_pass.ACCESS, NAME, 1, 3600, now=issued + 2),
        visitor_pass.ACCESS,
        NAME,
    )
    assert memory.still_in(fresh)  # signing in again works


def test_basic_auth_with_team_only_tells_a_script_what_works_not_a_bearer_token():
    access = Access(VisitorRules(basic_auth=("a:b",), team=True))
    answer = check(access, scope(headers=[(b"authorization", basic(b"a:b"))]))
    assert answer.status == 401
    assert "A script cannot" in answer.message and "sign in at" in answer.message
    assert "Bearer <token>" not in answer.message
    assert b"www-authenticate" not in dict(answer.headers)
    only_team = check(Access(VisitorRules(team=True)), scope())
    assert "Bearer <token>" in only_team.message


# --- team answers: re-checked, cached, rate-limited ---------------------------------------------
def team_cookie(user: int, owner: int = 1) -> bytes:
    value = visitor_pass.sign(visitor_pass.ACCESS, NAME, user, 3600, owner_user_id=owner)
    return b"tunnelsite_access=" + value.encode()


def test_a_pass_holder_removed_from_the_team_is_refused_when_the_answer_is_asked_again(
    team_records, monkeypatch
):
    access = Access(VisitorRules(team=True))
    cookie = [(b"cookie", team_cookie(9))]
    for _ in range(5):
        assert not isinstance(check(access, scope(headers=cookie)), Answer)
    assert team_records.calls == 1  # cached: one question for five requests
    team_records.users.discard((9, 1))  # left the group, deactivated or suspended
    assert not isinstance(check(access, scope(headers=cookie)), Answer)  # within the TTL
    monkeypatch.setattr(team, "TEAM_ANSWER_TTL_S", -1.0)  # every answer already stale
    team.lookups.answers = team.Answers()
    refused = check(access, scope(headers=cookie))
    assert isinstance(refused, Answer) and refused.status == 401


def test_random_tokens_from_one_address_are_cut_off_without_a_query(team_records):
    access = Access(VisitorRules(team=True))
    for number in range(protocol.TEAM_MISSES_PER_ADDRESS):
        token = f"Bearer lt_random{number}".encode()
        answer = check(access, scope(headers=[(b"authorization", token)], client="192.0.2.7"))
        assert answer.status == 401
    asked = team_records.calls
    cut = check(access, scope(headers=[(b"authorization", b"Bearer lt_more")], client="192.0.2.7"))
    assert cut.status == 429 and dict(cut.headers)[b"retry-after"] == b"60"
    assert team_records.calls == asked  # no query for it
    team_records.tokens["lt_good"] = 5
    other = check(
        access, scope(headers=[(b"authorization", b"Bearer lt_good")], client="192.0.2.8")
    )
    assert not isinstance(other, Answer)  # another address is not held up


def test_wrong_answers_never_evict_right_ones():
    answers = team.Answers(limit=3)
    now = time.monotonic()
    answers.put(b"good", True, now)
    for number in range(50):
        answers.put(f"bad{number}".encode(), False, now)
    assert answers.get(b"good", now) is True
    assert answers.get(b"bad49", now) is False and answers.get(b"bad0", now) is None
    assert answers.sizes() == (1, 3)  # oldest-first, never cleared


def test_lookups_in_flight_are_capped_relay_wide_with_a_503(team_records, monkeypatch):
    monkeypatch.setattr(team, "lookups", team.Lookups(limit=2))
    team_records.hold = threading.Event()
    access = Access(VisitorRules(team=True))

    async def visit(token: bytes, client: str):
        headers = [(b"authorization", b"Bearer " + token)]
        return await gate.check(NAME, 1, access, scope(headers=headers, client=client), None)

    async def scenario():
        held = [asyncio.ensure_future(visit(f"t{n}".encode(), f"192.0.2.{n}")) for n in (1, 2)]
        await wait_until_async(lambda: team.lookups.in_flight() == 2, 5, "two lookups held")
        shared = asyncio.ensure_future(visit(b"t1", "192.0.2.50"))  # the same answer: waits
        extra = await visit(b"t3", "192.0.2.3")
        team_records.hold.set()
        return extra, await asyncio.gather(*held, shared)

    extra, others = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert extra.status == 503 and dict(extra.headers)[b"retry-after"] == b"5"
    assert [answer.status for answer in others] == [401, 401, 401]
    assert team_records.calls == 2  # t1's two requests shared one lookup


def test_a_database_that_fails_costs_a_503_and_caches_nothing(team_records):
    def broken(credential, owner):
        raise RuntimeError("database away")

    team_records.team_member = broken
    access = Access(VisitorRules(team=True))
    answer = check(access, scope(headers=[(b"authorization", b"Bearer lt_x")]))
    assert answer.status == 503 and team.lookups.answers.sizes() == (0, 0)


# --- __Host- cookies on https ------------------------------------------------------------------
def test_on_https_the_relay_sets_and_reads_only_host_prefixed_cookies():
    access = Access(VisitorRules(team=True))
    query = b"ticket=" + visitor_pass.issue_ticket(NAME, 9, owner_user_id=1).encode()
    with override_settings(RELAY_PUBLIC_SCHEME="https"):
        answer = check(access, scope(path="/.well-known/tunnelsite/ticket", query=query))
        line = dict(answer.headers)[b"set-cookie"]
        assert line.startswith(b"__Host-tunnelsite_access=")
        attributes = line.split(b"; ")[1:]
        assert b"Path=/" in attributes and b"Secure" in attributes
        assert not any(a.lower().startswith(b"domain") for a in attributes)
        value = line.split(b";")[0].partition(b"=")[2]
        host_cookie = b"__Host-tunnelsite_access=" + value
        plain_cookie = b"tunnelsite_access=" + value  # what a sibling tunnel could toss in
        admitted = check(access, scope(headers=[(b"cookie", b"a=1; " + host_cookie)]))
        assert not isinstance(admitted, Answer)
        assert admitted["headers"] == [(b"cookie", b"a=1")]
        refused = check(access, scope(headers=[(b"cookie", plain_cookie)]))
        assert isinstance(refused, Answer) and refused.status == 401
    with override_settings(RELAY_PUBLIC_SCHEME="http"):  # and over http, the plain name only
        assert not isinstance(check(access, scope(headers=[(b"cookie", plain_cookie)])), Answer)
        assert isinstance(check(access, scope(headers=[(b"cookie", host_cookie)])), Answer)


def test_both_spellings_are_stripped_from_the_visitor_and_dropped_from_the_app():
    header = b"a=1; __Host-tunnelsite_warned=x; tunnelsite_access=y; __Host-tunnelsite_access=z"
    assert strip_relay_cookies(header) == b"a=1"
    kept = response_headers(
        [
            (b"set-cookie", b"__Host-tunnelsite_access=forged; Path=/; Secure"),
            (b"set-cookie", b"__host-TUNNELSITE_WARNED=forged; Path=/; Secure"),
            (b"set-cookie", b"tunnelsite_warned=forged"),
            (b"set-cookie", b"session=abc"),
        ]
    )
    assert kept == [(b"set-cookie", b"session=abc")]


def test_parse_networks_is_the_one_cidr_parser_with_the_sites_messages():
    assert protocol.parse_networks([" 10.1.2.3/8 ", "", "2001:db8::1"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::1/128"),
    )
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an address or network"):
        protocol.parse_networks(["10.0.0.0/33"])
    too_many = [f"10.0.{n}.0/24" for n in range(protocol.MAX_CIDRS + 1)]
    with pytest.raises(ValueError, match=f"at most {protocol.MAX_CIDRS} networks"):
        protocol.parse_networks(too_many)
    assert len(protocol.parse_networks(too_many, None)) == protocol.MAX_CIDRS + 1


def test_many_visitor_addresses_drop_the_oldest_cidr_decisions_not_all(monkeypatch):
    monkeypatch.setattr("relay.pool.access.ACCESS_DECISIONS_CACHED", 3)
    access = Access(VisitorRules(cidr_allow=(("10.0.0.0/8",),)))
    for n in range(10):
        assert access.admits(f"10.0.0.{n}")
    assert list(access._decided) == ["10.0.0.7", "10.0.0.8", "10.0.0.9"]


def test_continue_on_one_owners_tunnel_does_not_skip_the_next_owners_warning():
    """The warned cookie is bound to the owner as passes are: whoever holds a known name
    next (an anonymous owner too) gets its visitors' warning page again."""
    navigate = [
        (b"user-agent", b"Mozilla/5.0"),
        (b"accept", b"text/html"),
        (b"sec-fetch-mode", b"navigate"),
        (b"sec-fetch-site", b"same-origin"),
    ]
    first = Access(VisitorRules(warning=True), "ip:192.0.2.7")
    pressed = check(first, scope(path=CONTINUE_PATH, method="POST", headers=navigate))
    assert isinstance(pressed, Answer) and pressed.status == 303
    warned = dict(pressed.headers)[b"set-cookie"].split(b";")[0]
    again = scope(headers=[*navigate, (b"cookie", warned)])
    passed = check(first, again)
    assert not isinstance(passed, Answer)  # the same owner: no page, the cookie stripped
    assert all(name != b"cookie" for name, _ in passed["headers"])
    for next_owner in ("ip:198.51.100.9", "user:5"):
        page = check(Access(VisitorRules(warning=True), next_owner), again)
        assert isinstance(page, Answer) and page.status == 200
        assert b"You are about to visit" in page.body
