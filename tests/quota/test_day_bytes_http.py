"""An account's bytes for today stop an HTTP exchange mid-body, as they stop a WebSocket and a
TCP connection: a response is cut (the visitor's connection closed, so the client sees an
incomplete response), an upload answered 429, the pool socket closed.

How far past the limit: each body piece is checked and counted before it passes, with nothing
awaited between the two, so on one relay only the piece that crosses the limit passes it,
whatever number of exchanges the account runs at once: a response piece is at most one parse
slice of the pool socket (relay.protocol.PARSE_SLICE_BYTES), a request piece one body chunk
(BODY_CHUNK_BYTES). A visitor may get less than was counted for it: the cut drops what the
relay's and the system's buffers still held for it. The next request's 429 shows the day was
spent. A real relay, our lt, the local app; only the day's bytes are set."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from harness.http import Answer
from harness.relay import LocalApp, Relay
from harness.waiting import unique_name, wait_until

from relay.protocol import BODY_CHUNK_BYTES, PARSE_SLICE_BYTES

pytestmark = pytest.mark.timeout(120)

DAY_BYTES = 1024 * 1024  # the plan's bytes per day: "1 MiB" in the refusal
DOWN_OVER = PARSE_SLICE_BYTES  # the most a response passes the day's bytes by (one piece)
UP_OVER = BODY_CHUNK_BYTES  # the most an upload passes them by (one piece)
TIMEOUT_S = 30.0  # a visitor's socket reads: a cut comes within a piece, not at a timeout
JSON = [("Accept", "application/json")]


@pytest.fixture
def relay(relay_factory) -> Relay:
    """A relay whose default plan (our lt's anonymous tunnel) has DAY_BYTES a day, fresh for
    each test: the day's bytes are what each test spends."""
    return relay_factory(RELAY_DEFAULT_PLAN_MAX_BYTES_PER_DAY=DAY_BYTES)


@pytest.fixture
def name(relay: Relay, our_launcher, local_app: LocalApp) -> str:
    return our_launcher(relay, local_app.port).name


def get(relay: Relay, name: str, target: str) -> Answer:
    with relay.visitor(name) as visitor:
        visitor.sock.settimeout(TIMEOUT_S)
        return visitor.request("GET", target, JSON)


def assert_refused_for_the_day(answer: Answer) -> None:
    assert answer.status == 429, answer
    message = answer.json()["message"]
    assert "has used its 1.0 MiB of traffic for today (plan default)" in message, message
    assert "it resets at 00:00:00 UTC" in message, message
    assert int(answer.header("retry-after") or 0) > 0


def chunked(size: int, piece: int = 64 * 1024) -> bytes:
    """`size` bytes framed as chunks of `piece`."""
    block = b"u" * piece
    parts = []
    for start in range(0, size, piece):
        data = block[: min(piece, size - start)]
        parts.append(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + b"0\r\n\r\n"


def test_an_endless_chunked_response_is_cut_soon_after_the_days_bytes(
    relay: Relay, name: str
) -> None:
    streamed = get(relay, name, f"/stream?n={50 * 1024 * 1024}")
    assert streamed.status == 200
    assert not streamed.complete  # no terminating chunk: the client knows it is cut short
    assert 0 < len(streamed.body) <= DAY_BYTES + DOWN_OVER
    assert_refused_for_the_day(get(relay, name, "/hello"))


def test_a_content_length_download_past_the_days_bytes_is_cut_short(
    relay: Relay, name: str
) -> None:
    size = 3 * DAY_BYTES
    download = get(relay, name, f"/bytes/{size}")
    assert download.status == 200
    assert download.header("content-length") == str(size)
    assert not download.complete
    assert 0 < len(download.body) <= DAY_BYTES + DOWN_OVER
    assert_refused_for_the_day(get(relay, name, "/hello"))


def test_parallel_downloads_together_pass_the_days_bytes_by_one_piece_at_most(
    relay: Relay, name: str
) -> None:
    size = 2 * 1000 * 1000
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: get(relay, name, f"/bytes/{size}"), range(8)))
    statuses = {a.status for a in answers}
    assert statuses <= {200, 429}, statuses
    passed = sum(len(a.body) for a in answers if a.status == 200)
    assert 0 < passed <= DAY_BYTES + DOWN_OVER, [len(a.body) for a in answers]
    assert all(not a.complete for a in answers if a.status == 200)  # none got 2 MB whole
    for refused in (a for a in answers if a.status == 429):
        assert_refused_for_the_day(refused)


def test_a_chunked_upload_past_the_days_bytes_is_refused_and_the_app_gets_no_more(
    relay: Relay, name: str, local_app: LocalApp
) -> None:
    key = unique_name("up")
    size = 5 * 1000 * 1000
    with relay.visitor(name) as visitor:
        visitor.sock.settimeout(TIMEOUT_S)
        headers = [*JSON, ("Transfer-Encoding", "chunked")]
        answer = visitor.request("POST", f"/count?key={key}", headers, chunked(size))
    assert_refused_for_the_day(answer)

    def cut() -> dict[str, Any] | None:
        seen = json.loads(local_app.get(f"/counted?key={key}").body)
        return seen if seen["ended"] else None

    seen = wait_until(cut, 10, "the app's end of the cut upload")
    assert seen["ended"] == "cut"  # the app saw its request break off, not a shorter one
    assert 0 < seen["length"] <= DAY_BYTES + UP_OVER
    assert_refused_for_the_day(get(relay, name, "/hello"))


def test_requests_under_the_days_bytes_are_whole(
    relay: Relay, name: str, local_app: LocalApp
) -> None:
    key = unique_name("under")
    size = DAY_BYTES // 4
    with relay.visitor(name) as visitor:
        visitor.sock.settimeout(TIMEOUT_S)
        headers = [*JSON, ("Transfer-Encoding", "chunked")]
        upload = visitor.request("POST", f"/count?key={key}", headers, chunked(size))
    assert upload.status == 200 and upload.json() == {"length": size}
    for target in (f"/stream?n={size}", f"/bytes/{size}"):
        answer = get(relay, name, target)
        assert answer.status == 200 and answer.complete and len(answer.body) == size
    assert get(relay, name, "/hello").status == 200  # 3/4 of the day used: still open
