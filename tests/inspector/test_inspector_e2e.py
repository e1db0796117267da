"""The request inspector on a real relay (runrelay), our `lt` with a user's API token and the
local app (tests/apps/local_app.py): what is kept of real exchanges, what the JSON API shows
to whom, and replay through the tunnel."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from http.cookies import SimpleCookie

import pytest
from harness.fake_client import FakeTunnelClient
from harness.http import build_request
from harness.our_client import OurLtLauncher
from harness.proc import rss_kib
from harness.relay import LocalApp, Relay, manage
from harness.visitor_access import PASSWORD, sign_in

from relay import protocol

SETUP = f"""
import json
from django.contrib.auth import get_user_model
from tunnels.models import Account, ApiToken, Plan
User = get_user_model()
tokens = {{}}
for username in ("owner", "other", "staff", "private"):
    user = User.objects.create_user(username, password={PASSWORD!r})
    user.is_staff = username == "staff"
    user.save()
    tokens[username] = ApiToken.issue(user, name="e2e")[1]
quiet = Plan.objects.create(name="quiet", max_live_tunnels=0, inspect_requests=False)
Account.objects.create(user=User.objects.get(username="private"), plan=quiet)
print(json.dumps(tokens))
"""
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def relay(module_relay_factory) -> Relay:
    return module_relay_factory()  # the defaults: the inspector on, staff kept out


@pytest.fixture(scope="module")
def tokens(relay: Relay) -> dict[str, str]:
    return json.loads(manage(relay, "shell", "-c", SETUP).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tunnel(relay: Relay, tokens: dict[str, str], local_app: LocalApp, our_launcher) -> str:
    return our_launcher(relay, local_app.port, "--token", tokens["owner"]).name


def api(
    relay: Relay,
    path: str,
    token: str | None = None,
    method: str = "GET",
    body: dict | None = None,
    cookie: str | None = None,
    csrf: bool = False,
):
    headers = [("Authorization", f"Bearer {token}")] if token else []
    if cookie:
        headers.append(("Cookie", cookie))
        if csrf:
            jar: SimpleCookie = SimpleCookie()
            jar.load(cookie)
            headers.append(("X-CSRFToken", jar["csrftoken"].value))
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers.append(("Content-Type", "application/json"))
    return relay.request(method, path, headers=headers, body=data)


def newest(relay: Relay, name: str, token: str) -> dict:
    listed = api(relay, f"/api/tunnels/{name}/requests", token)
    assert listed.status == 200, listed
    return listed.json()["requests"][0]


def test_a_100_mib_upload_keeps_64_kib_the_app_gets_all_and_it_cannot_be_replayed_unedited(
    relay: Relay, tokens: dict[str, str], tunnel: str
) -> None:
    body = os.urandom(MIB) * 100
    rss_before = rss_kib(relay.process.pid)
    answer = relay.request("POST", "/sha256", name=tunnel, body=body)
    assert answer.status == 200, answer
    # The relay streams the body on (it spools it to a file first) and keeps 64 KiB of it:
    # its memory after the exchange has not grown by anything like the body.
    assert rss_kib(relay.process.pid) - rss_before < 100 * MIB // 1024 // 4
    assert answer.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": 100 * MIB}
    summary = newest(relay, tunnel, tokens["owner"])
    assert (summary["method"], summary["path"], summary["status"]) == ("POST", "/sha256", 200)
    assert summary["request_bytes"] == 100 * MIB
    detail = api(relay, f"/api/tunnels/{tunnel}/requests/{summary['id']}", tokens["owner"])
    kept = base64.b64decode(detail.json()["request"]["body_b64"])
    assert kept == body[: protocol.DEFAULT_INSPECT_BODY_BYTES]
    assert detail.json()["request"]["body_truncated"] is True
    replay = f"/api/tunnels/{tunnel}/requests/{summary['id']}/replay"
    refused = api(relay, replay, tokens["owner"], "POST", {})
    assert refused.status == 400, refused
    assert "cannot be sent again as it was" in refused.json()["message"]


def test_credentials_are_redacted_in_what_the_api_returns(
    relay: Relay, tokens: dict[str, str], tunnel: str
) -> None:
    sent = [
        ("Authorization", "Bearer visitor-secret-1"),
        ("Cookie", "session=visitor-secret-2"),
        ("Proxy-Authorization", "Basic visitor-secret-3"),
    ]
    answer = relay.request("GET", "/set-cookie?key=app-secret-4", name=tunnel, headers=sent)
    assert answer.status == 200 and answer.header("set-cookie") == "app=app-secret-4"
    summary = newest(relay, tunnel, tokens["owner"])
    detail = api(relay, f"/api/tunnels/{tunnel}/requests/{summary['id']}", tokens["owner"])
    assert detail.status == 200
    request = {n.lower(): v for n, v in detail.json()["request"]["headers"]}
    for name in ("authorization", "cookie"):
        assert request[name] == protocol.INSPECT_REDACTED
    assert "proxy-authorization" not in request  # the relay never sends it upstream at all
    response = {n.lower(): v for n, v in detail.json()["response"]["headers"]}
    assert response["set-cookie"] == protocol.INSPECT_REDACTED
    for secret in ("visitor-secret-1", "visitor-secret-2", "visitor-secret-3"):
        assert secret not in detail.text
    assert "app-secret-4" in summary["path"]  # the query string is the app's, kept as sent


def test_a_replay_with_an_edited_body_reaches_the_app_and_its_answer_comes_back(
    relay: Relay, tokens: dict[str, str], tunnel: str
) -> None:
    assert relay.request("POST", "/sha256", name=tunnel, body=b"first").status == 200
    original = newest(relay, tunnel, tokens["owner"])
    edited = base64.b64encode(b"second, edited").decode()
    path = f"/api/tunnels/{tunnel}/requests/{original['id']}/replay"
    replayed = api(relay, path, tokens["owner"], "POST", {"body_b64": edited})
    assert replayed.status == 200, replayed
    new = replayed.json()
    assert new["replay_of"] == original["id"] and new["status"] == 200
    answer = json.loads(base64.b64decode(new["response"]["body_b64"]))
    assert answer == {"sha256": hashlib.sha256(b"second, edited").hexdigest(), "length": 14}
    listed = api(relay, f"/api/tunnels/{tunnel}/requests?after={original['id']}", tokens["owner"])
    assert [s["id"] for s in listed.json()["requests"]] == [new["id"]]


def test_a_signed_in_owner_replays_with_the_csrf_token_only(
    relay: Relay, tokens: dict[str, str], tunnel: str
) -> None:
    assert relay.request("GET", "/hello", name=tunnel).status == 200
    session = sign_in(relay, "owner")
    summary = api(relay, f"/api/tunnels/{tunnel}/requests", cookie=session).json()["requests"][0]
    path = f"/api/tunnels/{tunnel}/requests/{summary['id']}/replay"
    without = api(relay, path, method="POST", body={}, cookie=session)
    assert without.status == 403 and "CSRF" in without.json()["message"]
    done = api(relay, path, method="POST", body={"method": "HEAD"}, cookie=session, csrf=True)
    assert done.status == 200, done
    assert (done.json()["method"], done.json()["status"]) == ("HEAD", 200)


@pytest.mark.parametrize("suffix", ["", "/1", "/1/replay"])
def test_others_and_anonymous_callers_see_nothing(
    relay: Relay, tokens: dict[str, str], tunnel: str, suffix: str
) -> None:
    assert relay.request("GET", "/hello", name=tunnel).status == 200
    path = f"/api/tunnels/{tunnel}/requests{suffix}"
    method = "POST" if suffix.endswith("replay") else "GET"
    missing = api(relay, f"/api/tunnels/no-such-one/requests{suffix}", tokens["other"], method)
    for caller in ("other", "staff"):  # staff only with RELAY_INSPECT_STAFF (off by default)
        refused = api(relay, path, tokens[caller], method, {} if method == "POST" else None)
        assert refused.status == 404, refused
        assert refused.json()["message"] == missing.json()["message"].replace("no-such-one", tunnel)
        assert "hello" not in refused.text
    anonymous = api(relay, path, None, method, {} if method == "POST" else None)
    assert anonymous.status == 401 and "Sign in" in anonymous.json()["message"]


def test_a_plan_without_inspection_keeps_nothing(
    relay: Relay, tokens: dict[str, str], local_app: LocalApp, our_launcher: OurLtLauncher
) -> None:
    name = our_launcher(relay, local_app.port, "--token", tokens["private"]).name
    assert relay.request("POST", "/sha256", name=name, body=b"private").status == 200
    off = api(relay, f"/api/tunnels/{name}/requests", tokens["private"])
    assert off.status == 409 and "Inspection is off" in off.json()["message"]


def test_a_failed_exchange_is_kept_with_why_and_its_replay_fails_like_the_visitor(
    relay: Relay, tokens: dict[str, str]
) -> None:
    """A fake tunnel client (tests/harness/fake_client.py) answers what the test says: a
    broken answer is the visitor's 502 and a capture with no status and the error; a replay
    answered properly is kept with replay_of, and one answered with a broken head is a 502."""
    auth = [("Authorization", f"Bearer {tokens['owner']}")]
    client = FakeTunnelClient(relay, headers=auth)
    try:
        client.connect(1)
        with relay.visitor(client.name) as visitor:
            visitor.send(build_request("GET", "/broken", relay.host(client.name), [], None))
            pool, request = client.next_request()
            assert request.target == "/broken"
            pool.send(b"NOT HTTP AT ALL\r\n\r\n")
            assert visitor.response().status == 502
        (failed,) = api(relay, f"/api/tunnels/{client.name}/requests", tokens["owner"]).json()[
            "requests"
        ]
        assert failed["status"] is None and failed["error"].startswith("502"), failed
        path = f"/api/tunnels/{client.name}/requests/{failed['id']}/replay"
        for answer, status in (
            (b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 200),
            (b"garbage\r\n\r\n", 502),
        ):
            client.connect(1)
            with relay.visitor() as caller:
                caller.send(build_request("POST", path, caller.host, auth, b"{}"))
                pool, request = client.next_request()
                assert (request.method, request.target) == ("GET", "/broken")
                assert request.header("authorization") is None  # the API caller's token stays
                pool.send(answer)
                replayed = caller.response("POST")
            assert replayed.status == status, replayed
        kept = api(relay, f"/api/tunnels/{client.name}/requests", tokens["owner"]).json()
        assert [(c["status"], c["replay_of"]) for c in kept["requests"]] == [
            (None, failed["id"]),
            (201, failed["id"]),
            (None, None),
        ]
    finally:
        client.close()
