"""The inspector's JSON views (tunnels/inspect_api.py) through Django's async test client: for
every endpoint, the owner (a session or an API token), another user, staff with and without
RELAY_INSPECT_STAFF, and anonymous callers. The tunnel is registered through the real API;
its one capture is stored as the byte path stores it (tests/inspector/test_inspector_e2e.py
makes them from real exchanges)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse
from django.test import AsyncClient, RequestFactory, TestCase, override_settings
from django.utils import timezone
from harness.accounts import AddressedClient, bearer, isolated, make_token, make_user

from relay.cluster.hop import forwarded_api_name
from relay.pool import captures
from relay.pool.registry import get_registry
from relay.protocol import TOKEN_TOUCH_INTERVAL_S, inspect_edits_max_bytes
from relay.proxy.replay import replay
from tunnels import inspect_api
from tunnels.models import ApiToken

OWNER = ("127.0.0.1", 50000)
PATHS = ["/api/tunnels/{name}/requests", "/api/tunnels/{name}/requests/{id}"]
REPLAY = "/api/tunnels/{name}/requests/{id}/replay"
HUGE = b'{"pad": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'  # past Django's
BAD_EDIT = {"method": "NOT A METHOD"}  # refused by the replay's checks, past the caller's


class InspectApiTests(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        captures.install_replayer(replay)  # as relay/asgi.py does in a relay process

    @classmethod
    def setUpTestData(cls) -> None:  # once: hashing the users' passwords is slow on purpose
        cls.owner = make_user("owner")
        cls.other = make_user("other")
        cls.staff = make_user("staff", is_staff=True)
        cls.tokens = {
            user.username: make_token(user)[1] for user in (cls.owner, cls.other, cls.staff)
        }

    async def _open(self) -> str:
        client = AddressedClient(OWNER)
        answer = await client.get("/my-hook-one", headers=bearer(self.tokens["owner"]))
        self.assertEqual(answer.status_code, 200, answer.content)
        tunnel = get_registry().get("my-hook-one")
        assert tunnel is not None and tunnel.captures is not None  # the default plan keeps
        capture = tunnel.captures.begin("GET", "/hello", [(b"host", b"x")], "127.0.0.1")
        capture.response_head(200, b"OK", [])
        tunnel.captures.finish(capture)
        self.capture_id = capture.id
        return "my-hook-one"

    async def _all(self, name: str, **headers: str) -> list[int]:
        client = AsyncClient()
        statuses = [
            (await client.get(p.format(name=name, id=self.capture_id), headers=headers)).status_code
            for p in PATHS
        ]
        replay = await client.post(
            REPLAY.format(name=name, id=self.capture_id),
            BAD_EDIT,
            content_type="application/json",
            headers=headers,
        )
        return [*statuses, replay.status_code]

    @isolated
    async def test_the_owner_with_a_token_reads_and_reaches_the_replay(self) -> None:
        name = await self._open()
        self.assertEqual(await self._all(name, **bearer(self.tokens["owner"])), [200, 200, 400])

    @isolated
    async def test_the_signed_in_owner_reads_and_reaches_the_replay(self) -> None:
        name = await self._open()
        client = AsyncClient()
        await client.aforce_login(self.owner)
        listed = await client.get(PATHS[0].format(name=name, id=0))
        self.assertEqual([r["path"] for r in listed.json()["requests"]], ["/hello"])
        replay = await client.post(
            REPLAY.format(name=name, id=self.capture_id), BAD_EDIT, content_type="application/json"
        )
        self.assertEqual(replay.status_code, 400)
        self.assertIn("method", replay.json()["message"])

    @isolated
    async def test_another_user_is_told_there_is_no_such_tunnel(self) -> None:
        name = await self._open()
        self.assertEqual(await self._all(name, **bearer(self.tokens["other"])), [404, 404, 404])
        client = AsyncClient()
        await client.aforce_login(self.other)
        theirs = await client.get(PATHS[0].format(name=name, id=0))
        missing = await client.get(PATHS[0].format(name="my-hook-one-not", id=0))
        self.assertEqual(
            theirs.json()["message"], missing.json()["message"].replace("my-hook-one-not", name)
        )

    @isolated
    async def test_staff_see_nothing_of_others_by_default(self) -> None:
        name = await self._open()
        self.assertEqual(await self._all(name, **bearer(self.tokens["staff"])), [404, 404, 404])

    @override_settings(RELAY_INSPECT_STAFF=True)
    @isolated
    async def test_staff_see_and_replay_when_the_operator_allows_it(self) -> None:
        name = await self._open()
        self.assertEqual(await self._all(name, **bearer(self.tokens["staff"])), [200, 200, 400])
        self.assertEqual(await self._all(name, **bearer(self.tokens["other"])), [404, 404, 404])

    @isolated
    async def test_anonymous_callers_are_asked_to_sign_in(self) -> None:
        name = await self._open()
        self.assertEqual(await self._all(name), [401, 401, 401])
        self.assertEqual(await self._all(name, Authorization="Bearer lt_not-a-token"), [401] * 3)

    @isolated
    async def test_a_missing_capture_is_a_404_that_says_why(self) -> None:
        name = await self._open()
        client = AsyncClient()
        gone = await client.get(
            f"/api/tunnels/{name}/requests/99", headers=bearer(self.tokens["owner"])
        )
        self.assertEqual(gone.status_code, 404)
        self.assertIn("latest ones", gone.json()["message"])

    @isolated
    async def test_bad_input_gets_a_clear_json_message(self) -> None:
        name = await self._open()
        client = AsyncClient()
        auth = bearer(self.tokens["owner"])
        after = await client.get(f"/api/tunnels/{name}/requests?after=x", headers=auth)
        self.assertEqual((after.status_code, "after" in after.json()["message"]), (400, True))
        not_json = await client.post(
            REPLAY.format(name=name, id=self.capture_id),
            "{",
            content_type="application/json",
            headers=auth,
        )
        self.assertEqual(not_json.status_code, 400)
        self.assertIn("JSON object", not_json.json()["message"])
        for edits, word in (
            ({"path": "no-slash"}, "path"),
            ({"body_b64": "***"}, "base64"),
            ({"headers": [["Bad Name", "v"]]}, "is not a header name"),
            ({"headers": [["x", "v"]] * 101}, "at most 100"),
        ):
            bad = await client.post(
                REPLAY.format(name=name, id=self.capture_id),
                edits,
                content_type="application/json",
                headers=auth,
            )
            self.assertEqual(bad.status_code, 400, edits)
            self.assertIn(word, bad.json()["message"])
        wrong = await client.get(REPLAY.format(name=name, id=self.capture_id), headers=auth)
        self.assertEqual(wrong.status_code, 405)

    @isolated
    async def test_deeply_nested_edits_are_a_json_400(self) -> None:
        name = await self._open()
        for depth in (2000, 100_000):  # both within the edits' size bound
            answer = await AsyncClient().post(
                REPLAY.format(name=name, id=self.capture_id),
                "[" * depth,
                content_type="application/json",
                headers=bearer(self.tokens["owner"]),
            )
            self.assertEqual(answer.status_code, 400, depth)
            self.assertIn("nested too deeply", answer.json()["message"])

    @isolated
    async def test_refusals_are_answered_without_a_log_line_each(self) -> None:
        # Anyone can ask for anyone's tunnel: a WARNING per refusal would let them fill the log.
        name = await self._open()
        with self.assertNoLogs("django.request", "WARNING"):
            self.assertEqual(await self._all(name), [401, 401, 401])
            self.assertEqual(await self._all(name, **bearer(self.tokens["other"])), [404] * 3)
            self.assertEqual(await self._all(name, **bearer(self.tokens["owner"])), [200, 200, 400])

    @isolated
    async def test_a_token_sees_only_the_tunnels_opened_with_it_a_session_sees_all(self) -> None:
        name = await self._open()  # opened with tokens["owner"]
        _, second = await make_token_async(self.owner, name="the other laptop")
        self.assertEqual(await self._all(name, **bearer(second)), [404, 404, 404])
        self.assertEqual(await self._all(name, **bearer(self.tokens["owner"])), [200, 200, 400])
        client = AsyncClient()
        await client.aforce_login(self.owner)
        self.assertEqual((await client.get(PATHS[0].format(name=name, id=0))).status_code, 200)

    @isolated
    async def test_a_token_used_only_to_read_shows_in_its_last_used_at_most_each_minute(
        self,
    ) -> None:
        name = await self._open()
        token, secret = await make_token_async(self.owner, name="read only")
        self.assertIsNone(token.last_used)
        await AsyncClient().get(PATHS[0].format(name=name, id=0), headers=bearer(secret))
        await token.arefresh_from_db()
        self.assertIsNotNone(token.last_used)
        recent = timezone.now() - timedelta(seconds=TOKEN_TOUCH_INTERVAL_S - 10)
        await ApiToken.objects.filter(pk=token.pk).aupdate(last_used=recent)
        await AsyncClient().get(PATHS[0].format(name=name, id=0), headers=bearer(secret))
        await token.arefresh_from_db()
        self.assertEqual(token.last_used, recent)  # throttled: no write per request
        stale = timezone.now() - timedelta(seconds=TOKEN_TOUCH_INTERVAL_S + 1)
        await ApiToken.objects.filter(pk=token.pk).aupdate(last_used=stale)
        await AsyncClient().get(PATHS[0].format(name=name, id=0), headers=bearer(secret))
        await token.arefresh_from_db()
        assert token.last_used is not None
        self.assertGreater(token.last_used, stale)

    @isolated
    async def test_a_mixed_case_tunnel_name_is_the_same_tunnel(self) -> None:
        name = await self._open()
        shouted = name.upper().replace("HOOK", "Hook")
        self.assertEqual(await self._all(shouted, **bearer(self.tokens["owner"])), [200, 200, 400])

    @isolated
    async def test_edits_are_bounded_by_the_kept_body_size_as_base64_plus_a_head(self) -> None:
        name = await self._open()
        limit = inspect_edits_max_bytes(
            settings.RELAY_INSPECT_BODY_BYTES, settings.RELAY_MAX_HEADER_BYTES
        )
        whole = base64.b64encode(bytes(settings.RELAY_INSPECT_BODY_BYTES)).decode()
        headers = [["x-h", "v" * 100]] * 100
        fits = {**BAD_EDIT, "body_b64": whole, "headers": headers}
        answer = await self._post(name, json.dumps(fits).encode())
        self.assertEqual(answer.status_code, 400, answer.content)  # past the size check
        over = json.dumps({**BAD_EDIT, "pad": "x" * limit}).encode()
        answer = await self._post(name, over)
        self.assertEqual(answer.status_code, 413)
        self.assertIn(str(limit), answer.json()["message"])

    @isolated
    async def test_a_body_past_djangos_upload_bound_is_a_json_413_not_an_html_400(self) -> None:
        name = await self._open()
        answer = await self._post(name, HUGE)
        self.assertEqual(answer.status_code, 413, answer.content[:300])
        self.assertIn("at most", answer.json()["message"])

    def test_an_undeclared_body_past_djangos_upload_bound_is_a_json_413_too(self) -> None:
        request = RequestFactory().post("/", HUGE, content_type="application/json")
        del request.META["CONTENT_LENGTH"]  # as a chunked upload: found only when read
        answer = inspect_api._edits(request)
        assert isinstance(answer, JsonResponse)
        self.assertEqual(answer.status_code, 413)
        self.assertIn("at most", json.loads(answer.content)["message"])

    async def _post(self, name: str, body: bytes) -> Any:
        return await AsyncClient().generic(
            "POST",
            REPLAY.format(name=name, id=self.capture_id),
            body,
            content_type="application/json",
            headers=bearer(self.tokens["owner"]),
        )


async def make_token_async(user: Any, name: str) -> tuple[ApiToken, str]:
    return await sync_to_async(make_token)(user, name)


def test_a_cluster_forwards_a_mixed_case_name_to_the_owner_of_the_lowercase_one() -> None:
    scope = {"type": "http", "method": "GET", "path": "/api/tunnels/My-Hook-One/requests"}
    assert forwarded_api_name(scope) == "my-hook-one"
