"""A replay is a request like a visitor's (relay/proxy/replay.py): the tunnel's plan limits
apply to it, and one deadline bounds it, however slowly the app answers. A real relay, our
`lt` and the local app (tests/apps/local_app.py)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from harness.relay import LocalApp, Relay, manage

from relay.protocol import INSPECT_REPLAY_MAX_CONCURRENT, PARSE_SLICE_BYTES

SETUP = """
import json
from django.contrib.auth import get_user_model
from tunnels.models import Account, ApiToken, Plan
user = get_user_model().objects.create_user("owner")
plan = Plan.objects.create(
    name="the plan", max_requests_per_minute={per_minute}, max_bytes_per_day={per_day}
)
Account.objects.create(user=user, plan=plan)
print(json.dumps({{"owner": ApiToken.issue(user, name="e2e")[1]}}))
"""
PACE_S = 0.25  # the dribbling app's pause between bytes
DEADLINE_S = 2  # RELAY_RESPONSE_TIMEOUT_S, the setting under test (the default is longer)


def _owner_token(relay: Relay, per_minute: int = 0, per_day: int = 0) -> str:
    """The token of a user whose plan allows `per_minute` requests a minute and `per_day`
    bytes a day (0: any)."""
    setup = SETUP.format(per_minute=per_minute, per_day=per_day)
    return json.loads(manage(relay, "shell", "-c", setup).strip().splitlines()[-1])["owner"]


def _replay(relay: Relay, name: str, token: str, capture_id: int, edits: dict) -> object:
    return relay.request(
        "POST",
        f"/api/tunnels/{name}/requests/{capture_id}/replay",
        headers=[("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")],
        body=json.dumps(edits).encode(),
    )


def _newest_id(relay: Relay, name: str, token: str) -> int:
    listed = relay.get(
        f"/api/tunnels/{name}/requests", headers=[("Authorization", f"Bearer {token}")]
    )
    assert listed.status == 200, listed
    return int(listed.json()["requests"][0]["id"])


def test_a_replay_past_the_plans_requests_per_minute_is_refused_like_a_visitor(
    relay_factory, local_app: LocalApp, our_launcher
) -> None:
    relay = relay_factory()
    token = _owner_token(relay, per_minute=1)
    name = our_launcher(relay, local_app.port, "--token", token).name
    assert relay.get("/hello", name=name).status == 200  # the minute's one request
    answer = _replay(relay, name, token, _newest_id(relay, name, token), {})
    assert answer.status == 429, answer
    assert "requests for this minute" in answer.json()["message"]
    assert int(answer.header("Retry-After") or 0) >= 1, "when to try again"
    assert relay.get("/hello", name=name).status == 429  # and visitors still are


def test_a_replays_answer_is_cut_when_the_accounts_bytes_for_today_run_out(
    relay_factory, local_app: LocalApp, our_launcher
) -> None:
    day = 1024 * 1024
    relay = relay_factory()
    token = _owner_token(relay, per_day=day)
    name = our_launcher(relay, local_app.port, "--token", token).name
    assert relay.get("/hello", name=name).status == 200
    answer = _replay(
        relay, name, token, _newest_id(relay, name, token), {"path": f"/bytes/{3 * day}"}
    )
    assert answer.status == 200, answer
    kept = answer.json()
    assert kept["error"] == "cut: the account's daily traffic allowance ran out", kept
    assert 0 < kept["response_bytes"] <= day + PARSE_SLICE_BYTES, kept  # one piece past it
    refused = relay.get("/hello", name=name)
    assert refused.status == 429 and "1.0 MiB of traffic for today" in refused.text, refused
    again = _replay(relay, name, token, _newest_id(relay, name, token), {})
    assert again.status == 429 and "of traffic for today" in again.json()["message"], again


def test_an_app_that_dribbles_its_answer_cannot_hold_a_replay_past_one_deadline(
    relay_factory, local_app: LocalApp, our_launcher
) -> None:
    relay = relay_factory(RELAY_RESPONSE_TIMEOUT_S=DEADLINE_S)
    token = _owner_token(relay)
    name = our_launcher(relay, local_app.port, "--token", token).name
    assert relay.get("/hello", name=name).status == 200
    # Each byte comes well within the deadline; all of them take 10x longer than it.
    dribble = f"/dribble?n={int(10 * DEADLINE_S / PACE_S)}&every={PACE_S}"
    started = time.monotonic()
    answer = _replay(relay, name, token, _newest_id(relay, name, token), {"path": dribble})
    took = time.monotonic() - started
    assert answer.status == 504, answer
    assert "in full" in answer.json()["message"]
    assert took < DEADLINE_S + 4, took  # the socket was at hand: the deadline, and some slack
    kept = relay.get(
        f"/api/tunnels/{name}/requests", headers=[("Authorization", f"Bearer {token}")]
    ).json()["requests"][0]
    assert kept["error"].startswith("504") and kept["response_bytes"] > 0, kept


def test_replays_past_the_bound_in_flight_are_refused_and_cannot_flood_the_window(
    relay_factory, local_app: LocalApp, our_launcher
) -> None:
    relay = relay_factory()
    token = _owner_token(relay)
    name = our_launcher(relay, local_app.port, "--token", token).name
    assert relay.get("/hello", name=name).status == 200
    original = _newest_id(relay, name, token)
    key = uuid.uuid4().hex
    held = {"path": f"/slow?key={key}"}  # answered only once the test releases the key
    with ThreadPoolExecutor(INSPECT_REPLAY_MAX_CONCURRENT) as pool:
        running = [
            pool.submit(_replay, relay, name, token, original, held)
            for _ in range(INSPECT_REPLAY_MAX_CONCURRENT)
        ]
        local_app.wait_for_waiting(key, INSPECT_REPLAY_MAX_CONCURRENT)
        for _ in range(3):  # past the bound: refused at once, not queued
            refused = _replay(relay, name, token, original, held)
            assert refused.status == 429, refused
            assert "replays in flight" in refused.json()["message"]
            assert int(refused.header("Retry-After") or 0) >= 1, "when to try again"
        assert relay.get("/hello", name=name).status == 200  # visitors still find a socket
        local_app.release(key)
        assert [f.result().status for f in running] == [200] * INSPECT_REPLAY_MAX_CONCURRENT
    assert local_app.waiting(key) == 0
    again = _replay(relay, name, token, original, {})  # the original is still in the window
    assert again.status == 200, again
    assert again.json()["replay_of"] == original
