"""The inspector's JSON views (tunnels/inspect_api.py) through Django's async test client: for
every endpoint, the owner (a session or an API token), another user, staff with and without
RELAY_INSPECT_STAFF, and anonymous callers. The tunnel is registered through the real API;
its one capture is stored as the byte path stores it (tests/inspector/test_inspector_e2e.py
makes them from real exchanges)."""

from __future__ import annotations

from django.test import AsyncClient, TestCase, override_settings
from harness.accounts import AddressedClient, bearer, isolated, make_token, make_user

from relay.pool import captures
from relay.pool.registry import get_registry
from relay.proxy.replay import replay

OWNER = ("127.0.0.1", 50000)
PATHS = ["/api/tunnels/{name}/requests", "/api/tunnels/{name}/requests/{id}"]
REPLAY = "/api/tunnels/{name}/requests/{id}/replay"
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
            ({"headers": [["Bad Name", "v"]]}, "cannot be sent"),
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
