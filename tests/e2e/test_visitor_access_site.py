"""The site's side of visitor access on a real relay process (runrelay, Daphne, the ASGI
headers as they arrive): our lt's rules header at registration, the team sign-in's first
steps, and an abuse report with its CSRF check."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

from harness.http import Answer
from harness.relay import Relay
from harness.visitor_access import cookies_of

from relay import protocol

SECRET = "pässwörd-never-logged"


def register(relay: Relay, rules: object, raw: str | None = None) -> Answer:
    value = raw if raw is not None else json.dumps(rules, ensure_ascii=False)
    # The header goes out as UTF-8 bytes (build_request writes latin-1: one byte per char).
    wire = value.encode("utf-8").decode("latin-1")
    return relay.request("GET", "/?new", headers=[(protocol.ACCESS_HEADER, wire)])


def test_rules_in_utf8_register_and_a_bad_header_is_a_400_that_logs_no_password(
    relay: Relay,
) -> None:
    good = register(relay, {"basic_auth": [f"zoë:{SECRET}"], "cidr_deny": ["2001:db8::/32"]})
    assert good.status == 200, good
    bad = register(relay, {"basic_auth": [SECRET], "cidr_allow": ["10.0.0.0/8"]})
    assert bad.status == 400, bad
    assert 'basic_auth entry 1 must be "user:password"' in bad.json()["message"]
    garbled = register(relay, None, raw='{"private": tru')
    assert garbled.status == 400 and "not JSON" in garbled.json()["message"]
    assert SECRET not in bad.text
    assert SECRET not in relay.process.output()


def test_an_anonymous_team_only_tunnel_is_refused(relay: Relay) -> None:
    answer = register(relay, {"private": True})
    assert answer.status == 403
    assert "lt login" in answer.json()["message"]


def test_the_team_sign_in_sends_an_anonymous_browser_to_sign_in_and_back(relay: Relay) -> None:
    query = urlencode({"tunnel": "some-app", "next": "/dash?x=1"})
    first = relay.get(f"{protocol.TEAM_SIGNIN_PATH}?{query}")
    assert first.status == 302, first
    location = urlsplit(first.header("location") or "")
    assert location.path == "/accounts/login/"
    back = parse_qs(location.query)["next"][0]
    assert back == f"{protocol.TEAM_SIGNIN_PATH}?{query}"
    page = relay.get(f"/accounts/login/?{location.query}")
    assert page.status == 200
    assert 'name="next" value="/visit/?tunnel=some-app&amp;next=%2Fdash%3Fx%3D1"' in page.text


def test_an_abuse_report_needs_the_forms_csrf_token(relay: Relay) -> None:
    form = relay.get(f"{protocol.ABUSE_REPORT_PATH}?tunnel=some-app&url=http%3A%2F%2Fx%2F")
    assert form.status == 200, form
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None
    cookie = cookies_of(form)["csrftoken"]
    body = urlencode({"tunnel": "some-app", "url": "http://x/", "note": "spam"}).encode()
    form_type = ("Content-Type", "application/x-www-form-urlencoded")
    refused = relay.request("POST", protocol.ABUSE_REPORT_PATH, headers=[form_type], body=body)
    assert refused.status == 403
    sent = relay.request(
        "POST",
        protocol.ABUSE_REPORT_PATH,
        headers=[form_type, ("Cookie", f"csrftoken={cookie}")],
        body=body + f"&csrfmiddlewaretoken={token.group(1)}".encode(),
    )
    assert sent.status == 200, sent
    assert "Thank you" in sent.text
