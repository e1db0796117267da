"""The inspector's memory, fed bytes (relay/pool/captures.py): the per-tunnel and relay-wide
bounds, redaction, ids and the JSON shapes (relay.protocol.INSPECT_PATH)."""

from __future__ import annotations

import base64
import gc
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import h11
from django.test import SimpleTestCase, override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.pool import captures
from relay.pool.captures import Store, TunnelCaptures
from relay.protocol import (
    INSPECT_HEADER_OVERHEAD_BYTES,
    INSPECT_RECORD_OVERHEAD_BYTES,
    INSPECT_REDACTED,
    INSPECT_REPLAYS_KEPT,
)


@dataclass(eq=False)
class FakeTunnel:
    name: str
    captures: TunnelCaptures | None = None
    user_id: int | None = 7


def record(
    home: TunnelCaptures,
    body: bytes = b"",
    answer: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    response_headers: list[tuple[bytes, bytes]] | None = None,
    error: str = "",
) -> captures.Capture:
    capture = home.begin("POST", "/hook?x=1", headers or [(b"host", b"a.example")], "10.0.0.7")
    capture.request.add(body)
    capture.response_head(200, b"OK", response_headers or [])
    capture.response.add(answer)
    home.finish(capture, error)
    return capture


class BoundsTests(SimpleTestCase):
    def test_a_tunnel_keeps_its_last_requests_oldest_out_first(self) -> None:
        home = TunnelCaptures(Store(requests=3, body_bytes=100, memory_bytes=10**6))
        ids = [record(home).id for _ in range(5)]
        self.assertEqual(list(home.records), ids[2:])

    def test_ids_rise_and_summaries_come_newest_first_after_an_id(self) -> None:
        tunnel = FakeTunnel("t", TunnelCaptures(Store(50, 100, 10**6)))
        assert tunnel.captures is not None
        ids = [record(tunnel.captures).id for _ in range(4)]
        found = captures.summaries(tunnel, after=ids[1])
        assert found is not None
        self.assertEqual([s["id"] for s in found], [ids[3], ids[2]])

    def test_a_busy_tunnel_pushes_out_the_relay_wide_oldest_within_the_memory_bound(self) -> None:
        host = INSPECT_HEADER_OVERHEAD_BYTES + len("host") + len("a.example")
        cost = INSPECT_RECORD_OVERHEAD_BYTES + 4 + 9 + host + 2 + 1000
        store = Store(requests=50, body_bytes=1000, memory_bytes=3 * cost)
        quiet, busy = TunnelCaptures(store), TunnelCaptures(store)
        record(quiet, body=b"q" * 1000)
        ids = [record(busy, body=b"b" * 1000).id for _ in range(2)]
        self.assertEqual(store.used, 3 * cost)
        ids.append(record(busy, body=b"b" * 1000).id)
        self.assertEqual(list(quiet.records), [])  # the oldest of all went first
        self.assertEqual(list(busy.records), ids)
        self.assertLessEqual(store.used, store.memory_bytes)

    def test_clearing_a_tunnel_frees_its_share(self) -> None:
        store = Store(50, 100, 10**6)
        tunnel = FakeTunnel("t", TunnelCaptures(store))
        assert tunnel.captures is not None
        record(tunnel.captures, body=b"x" * 100)
        self.assertGreater(store.used, 0)
        captures.forget(tunnel)
        self.assertEqual(store.used, 0)
        self.assertEqual(len(store.order), 0)
        self.assertIsNone(captures.summaries(tunnel))

    @override_settings(RELAY_INSPECT_REQUESTS=0)
    def test_zero_requests_turns_the_inspector_off_relay_wide(self) -> None:
        tunnel = FakeTunnel("t")
        captures.enable(tunnel, True)
        self.assertIsNone(tunnel.captures)

    @override_settings(RELAY_INSPECT_MEMORY_BYTES=0)
    def test_zero_memory_turns_the_inspector_off_relay_wide(self) -> None:
        tunnel = FakeTunnel("t")
        captures.enable(tunnel, True)
        self.assertIsNone(tunnel.captures)

    def test_an_anonymous_tunnel_keeps_nothing_it_has_no_owner_to_show(self) -> None:
        tunnel = FakeTunnel("t", user_id=None)
        captures.enable(tunnel, True)
        self.assertIsNone(tunnel.captures)

    def test_enable_false_forgets_what_was_kept(self) -> None:
        tunnel = FakeTunnel("t")
        captures.enable(tunnel, True)
        assert tunnel.captures is not None
        kept = record(tunnel.captures)
        captures.enable(tunnel, True)  # a reclaim that is still allowed keeps them
        self.assertEqual(len(captures.summaries(tunnel) or []), 1)
        captures.enable(tunnel, False)
        self.assertIsNone(tunnel.captures)
        self.assertIsNone(captures.detail(tunnel, kept.id))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(0, 3), st.integers(0, 5000), st.integers(0, 5000)),
            max_size=60,
        ),
        st.integers(0, 20_000),
        st.integers(1, 10),
    )
    def test_no_sequence_of_sizes_passes_the_bounds(
        self, exchanges: list[tuple[int, int, int]], memory: int, per_tunnel: int
    ) -> None:
        store = Store(requests=per_tunnel, body_bytes=2000, memory_bytes=memory)
        homes = [TunnelCaptures(store) for _ in range(4)]
        for which, sent, answered in exchanges:
            record(homes[which], body=b"x" * sent, answer=b"y" * answered)
            self.assertLessEqual(store.used, memory)
            self.assertLessEqual(len(homes[which].records), per_tunnel)
        self.assertEqual(store.used, sum(c.cost for c in store.order.values()))
        self.assertEqual(len(store.order), sum(len(h.records) for h in homes))


def parsed_head(lines: list[bytes]) -> h11.Request:
    """A request head as the relay has it: parsed by h11 from bytes."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(
        b"POST /hook HTTP/1.1\r\nHost: a\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    )
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    return event


def held_and_counted(fill: Callable[[TunnelCaptures], None]) -> tuple[int, int]:
    """The memory `fill`'s stored captures really hold (tracemalloc) and what the store counts."""
    store = Store(requests=1000, body_bytes=64 * 1024, memory_bytes=10**9)
    home = TunnelCaptures(store)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill(home)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held, store.used


# What the store counts may be below what the captures hold by at most this factor: the
# memory bound (RELAY_INSPECT_MEMORY_BYTES) then holds within it.
_HONEST = 1.5


class IdTests(SimpleTestCase):
    """The page polls `?after=<newest id>` and opens a request by id: ids must never go back."""

    def test_a_re_registered_tunnel_goes_on_above_its_previous_ids(self) -> None:
        tunnel = FakeTunnel("t")
        captures.enable(tunnel, True)
        assert tunnel.captures is not None
        before = record(tunnel.captures).id
        captures.forget(tunnel)  # it closed
        captures.enable(tunnel, True)  # and registered again
        assert tunnel.captures is not None
        after = record(tunnel.captures).id
        self.assertGreater(after, before)
        self.assertIsNone(captures.detail(tunnel, before))

    def test_ids_are_relay_wide_two_tunnels_never_share_one(self) -> None:
        store = Store(50, 100, 10**6)
        one, two = TunnelCaptures(store), TunnelCaptures(store)
        ids = [record(home).id for home in (one, two, one, two)]
        self.assertEqual(ids, sorted(set(ids)))

    def test_a_restarted_relay_starts_above_the_previous_runs_ids(self) -> None:
        first_run = TunnelCaptures(Store(50, 100, 10**6))
        last = [record(first_run).id for _ in range(5)][-1]
        deadline = time.monotonic() + 5
        while int(time.time() * 1000) <= last:  # a restart takes longer than 5 exchanges take
            self.assertLess(time.monotonic(), deadline, "the wall clock did not move")
        restarted = TunnelCaptures(Store(50, 100, 10**6))
        self.assertGreater(record(restarted).id, last)


class HotPathTests(SimpleTestCase):
    """Capturing is on the byte path: it copies only what it keeps."""

    def test_a_head_without_credentials_is_kept_by_reference_not_copied(self) -> None:
        home = TunnelCaptures(Store(50, 100, 10**6))
        head = parsed_head([b"Content-Type: application/json"])
        answer = parsed_head([b"X-Answer: yes"])
        capture = home.begin("POST", "/hook", head.headers, "10.0.0.7")
        capture.response_head(200, b"OK", answer.headers)
        home.finish(capture)
        self.assertIs(capture.request_headers, head.headers)
        self.assertIs(capture.response_headers, answer.headers)
        self.assertEqual(
            capture.detail()["request"]["headers"][1], ["content-type", "application/json"]
        )

    def test_a_head_with_credentials_is_copied_with_them_redacted(self) -> None:
        home = TunnelCaptures(Store(50, 100, 10**6))
        head = parsed_head([b"Cookie: s=1"])
        capture = home.begin("POST", "/hook", head.headers, "10.0.0.7")
        self.assertIsNot(capture.request_headers, head.headers)
        self.assertEqual(list(capture.request_headers)[1], (b"cookie", INSPECT_REDACTED.encode()))

    def test_the_wall_time_derived_from_the_monotonic_clock_is_now(self) -> None:
        before = time.time()
        capture = record(TunnelCaptures(Store(50, 100, 10**6)))
        after = time.time()
        # The offset between the clocks is taken once: allow for NTP slewing since.
        self.assertLess(before - 1, capture.summary()["at"])
        self.assertLess(capture.summary()["at"], after + 1)


class MemoryTests(SimpleTestCase):
    def test_a_body_that_came_in_tiny_pieces_costs_what_is_counted(self) -> None:
        def fill(home: TunnelCaptures) -> None:
            for _ in range(10):
                capture = home.begin("POST", "/hook", [(b"host", b"a.example")], "10.0.0.7")
                body = bytes(64 * 1024)
                for i in range(0, len(body), 2):
                    capture.request.add(body[i : i + 2])
                capture.response_head(200, b"OK", [])
                for i in range(0, len(body), 3):
                    capture.response.add(body[i : i + 3])
                home.finish(capture)

        held, counted = held_and_counted(fill)
        self.assertLessEqual(held, _HONEST * counted, f"held {held} B, counted {counted} B")

    def test_a_head_of_many_headers_costs_what_is_counted(self) -> None:
        def fill(home: TunnelCaptures) -> None:
            for n in range(20):
                head = parsed_head([b"X-H%d-%d: v" % (n, i) for i in range(100)])
                capture = home.begin("POST", "/hook", head.headers, "10.0.0.7")
                answer = parsed_head([b"Y-%d-%d: w" % (n, i) for i in range(100)])
                capture.response_head(200, b"OK", answer.headers)
                home.finish(capture)

        held, counted = held_and_counted(fill)
        self.assertLessEqual(held, _HONEST * counted, f"held {held} B, counted {counted} B")

    def test_what_is_counted_is_not_far_above_what_is_held(self) -> None:
        def fill(home: TunnelCaptures) -> None:
            for n in range(20):
                head = parsed_head([b"X-Header-%d-%d: some value" % (n, i) for i in range(30)])
                capture = home.begin("POST", "/hook", head.headers, "10.0.0.7")
                capture.request.add(bytes(1000 + n))
                capture.response_head(200, b"OK", [])
                home.finish(capture)

        held, counted = held_and_counted(fill)
        self.assertLessEqual(counted, 2 * held, f"held {held} B, counted {counted} B")


class BodyTests(SimpleTestCase):
    def test_a_body_keeps_its_first_bytes_and_counts_the_rest(self) -> None:
        home = TunnelCaptures(Store(50, 10, 10**6))
        capture = home.begin("POST", "/", [], "")
        for piece in (b"abcdef", b"ghijkl", b"mnop"):
            capture.request.add(piece)
        home.finish(capture)
        detail = capture.detail()
        self.assertEqual(base64.b64decode(detail["request"]["body_b64"]), b"abcdefghij")
        self.assertTrue(detail["request"]["body_truncated"])
        self.assertEqual(detail["request_bytes"], 16)

    def test_a_whole_body_is_not_truncated(self) -> None:
        home = TunnelCaptures(Store(50, 10, 10**6))
        capture = record(home, body=b"0123456789", answer=b"ok")
        detail = capture.detail()
        self.assertFalse(detail["request"]["body_truncated"])
        self.assertFalse(detail["response"]["body_truncated"])
        self.assertEqual(base64.b64decode(detail["response"]["body_b64"]), b"ok")

    def test_a_capture_records_its_error(self) -> None:
        home = TunnelCaptures(Store(50, 10, 10**6))
        capture = home.begin("GET", "/", [], "")
        home.finish(capture, "504: no answer within 10 s")
        summary = capture.summary()
        self.assertIsNone(summary["status"])
        self.assertEqual(summary["error"], "504: no answer within 10 s")

    def test_the_summary_and_detail_have_the_documented_keys(self) -> None:
        capture = record(TunnelCaptures(Store(50, 10, 10**6)))
        self.assertEqual(
            set(capture.summary()),
            {
                "id",
                "at",
                "method",
                "path",
                "status",
                "duration_ms",
                "request_bytes",
                "response_bytes",
                "client_ip",
                "replay_of",
                "error",
            },
        )
        detail = capture.detail()
        self.assertEqual(set(detail["request"]), {"headers", "body_b64", "body_truncated"})
        self.assertEqual(
            set(detail["response"]), {"reason", "headers", "body_b64", "body_truncated"}
        )


class RedactionTests(SimpleTestCase):
    def test_credentials_are_redacted_in_both_directions_whatever_their_case(self) -> None:
        secrets = [
            (b"Authorization", b"Bearer lt_secret"),
            (b"COOKIE", b"sessionid=s1"),
            (b"proxy-authorization", b"Basic c2VjcmV0"),
        ]
        answer = [(b"Set-Cookie", b"session=s2; HttpOnly"), (b"set-cookie", b"b=s3")]
        capture = record(
            TunnelCaptures(Store(50, 10, 10**6)),
            headers=[(b"host", b"a"), *secrets],
            response_headers=[(b"content-type", b"text/plain"), *answer],
        )
        detail = capture.detail()
        request = dict((n.lower(), v) for n, v in detail["request"]["headers"])
        self.assertEqual(request["host"], "a")
        for name in ("authorization", "cookie", "proxy-authorization"):
            self.assertEqual(request[name], INSPECT_REDACTED)
        response = detail["response"]["headers"]
        self.assertEqual(
            [v for n, v in response if n.lower() == "set-cookie"], [INSPECT_REDACTED] * 2
        )
        text = repr(detail) + repr(capture.request_headers) + repr(capture.response_headers)
        for secret in ("lt_secret", "s1", "c2VjcmV0", "s2", "s3"):
            self.assertNotIn(secret, text)


class ReplayWindowTests(SimpleTestCase):
    """Replays push out older replays, not visitors' requests (INSPECT_REPLAYS_KEPT)."""

    def test_a_burst_of_replays_keeps_the_replayed_request_and_the_visitors(self) -> None:
        home = TunnelCaptures(Store(requests=50, body_bytes=100, memory_bytes=10**7))
        visitors = [record(home).id for _ in range(40)]
        original = visitors[-1]
        replays = []
        for _ in range(200):
            replay = home.begin("POST", "/hook", [(b"host", b"a")], "", replay_of=original)
            home.finish(replay)
            replays.append(replay.id)
        self.assertEqual(list(home.records), visitors + replays[-INSPECT_REPLAYS_KEPT:])

    def test_replays_into_a_full_window_push_out_at_most_their_bound_of_visitors(self) -> None:
        home = TunnelCaptures(Store(requests=50, body_bytes=100, memory_bytes=10**7))
        visitors = [record(home).id for _ in range(50)]
        for _ in range(200):
            replay = home.begin("GET", "/", [], "", replay_of=visitors[-1])
            home.finish(replay)
        self.assertEqual(len(home.records), 50)
        self.assertEqual(
            [i for i in home.records if i in visitors], visitors[INSPECT_REPLAYS_KEPT:]
        )
