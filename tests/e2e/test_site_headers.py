"""The headers the site's own answers carry, pinned on a real relay: a registration's JSON and
a page (the landing page, the sign-in form). Whatever runs Django's middleware (a sync chain
or an async one, whichever threads serve it), these must stay."""

from __future__ import annotations

from harness.waiting import unique_name

# SecurityMiddleware, XFrameOptionsMiddleware, and the content type of each answer.
COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "x-frame-options": "DENY",
}


def picked(answer, names):
    return {name: answer.header(name) for name in names}


def test_a_registration_answer_carries_the_sites_security_headers(relay):
    answer = relay.register(unique_name("hdr"))

    assert answer.status == 200, answer
    assert picked(answer, COMMON) == COMMON
    assert answer.header("content-type") == "application/json"
    assert answer.header_names() == {*COMMON, "content-type", "content-length", "server"}


def test_a_page_carries_the_sites_security_headers(relay):
    answer = relay.get("/")

    assert answer.status == 200, answer
    assert picked(answer, COMMON) == COMMON
    assert answer.header("content-type") == "text/html; charset=utf-8"
    assert answer.header_names() == {*COMMON, "content-type", "content-length", "server"}


def test_the_sign_in_form_sets_its_csrf_cookie_and_varies_on_cookie(relay):
    answer = relay.get("/accounts/login/")

    assert answer.status == 200, answer
    assert picked(answer, COMMON) == COMMON
    assert "csrftoken=" in (answer.header("set-cookie") or ""), answer.headers
    assert answer.header("vary") == "Cookie", answer.headers
    assert "no-store" in (answer.header("cache-control") or ""), answer.headers
    assert "frame-ancestors 'none'" in (answer.header("content-security-policy") or "")
