"""The account's bytes for today on the HTTP exchange (relay/proxy/exchange.py `carry`/`count`),
fed bytes without sockets: every body piece, up or down, of any number of exchanges at once
is checked and counted once as it passes, so together they pass the day's bytes by at most
the piece that crossed it; an exchange stopped mid-body is a DayUsed with the day's refusal,
and a visitor who already had the head never gets the response's end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from harness.fake_upstream import FakeUpstream
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.pool.bandwidth import Shaper
from relay.pool.quota import DayUsed, Quota
from relay.proxy.exchange import Progress, build_request, exchange


@dataclass
class Carrier:
    """What an exchange measures its pieces against (a tunnel without a bandwidth limit)."""

    quota: Quota | None
    shaper: Shaper | None = None
    closed: bool = False
    pacing: int = 0
    last_activity: float = 0.0


class Visitor:
    def __init__(self, pieces: list[bytes]) -> None:
        self.more = list(pieces[1:])
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        body = self.more.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.more)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        await asyncio.sleep(0)  # other exchanges run meanwhile, as on the relay's loop

    @property
    def got(self) -> int:
        return sum(len(m.get("body", b"")) for m in self.sent)

    @property
    def ended(self) -> bool:
        return any(m.get("more_body") is False for m in self.sent)


def chunked_answer(chunks: list[int]) -> bytes:
    body = b"".join(f"{n:x}\r\n".encode() + b"d" * n + b"\r\n" for n in chunks)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"


async def one(carrier: Carrier, up: list[int], down: list[int]) -> tuple[Any, Progress, Visitor]:
    pieces = [b"u" * n for n in up] or [b""]
    visitor = Visitor(pieces)
    first = {"type": "http.request", "body": pieces[0], "more_body": len(pieces) > 1}
    scope = {"method": "POST", "path": "/", "raw_path": b"/", "query_string": b"", "headers": []}
    head = build_request(scope, first, [(b"host", b"app.localhost")], None, False)
    progress = Progress()
    upstream = FakeUpstream(chunked_answer(down))
    failure = await exchange(
        upstream, visitor.receive, visitor.send, None, head, first, progress, 5.0, 5.0,
        paced=carrier,
    )  # fmt: skip
    return failure, progress, visitor


sizes = st.lists(st.integers(1, 5000), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 40_000),
    exchanges=st.lists(st.tuples(sizes, sizes), min_size=1, max_size=6),
)
def test_exchanges_at_once_count_each_piece_once_and_pass_the_day_by_one_piece_at_most(
    limit: int, exchanges: list[tuple[list[int], list[int]]]
) -> None:
    quota = Quota(0, limit, 0, 0, plan="Free")
    carrier = Carrier(quota)

    async def all_of_them() -> list[tuple[Any, Progress, Visitor]]:
        return await asyncio.gather(*(one(carrier, up, down) for up, down in exchanges))

    results = asyncio.run(all_of_them())
    assert quota.usage is not None
    counted = quota.usage.local_day_bytes
    # Exactly once: what was counted is what passed, up (written upstream) and down (sent).
    assert counted == sum(p.body + p.sent for _, p, _ in results)
    assert all(v.got == p.sent for _, p, v in results)
    largest = max([*(n for up, _ in exchanges for n in up), *(sum(d) for _, d in exchanges), 1])
    assert counted <= limit + largest  # the piece that crossed it, no more
    for failure, _, visitor in results:
        assert failure is None or isinstance(failure, DayUsed), failure
        if failure is None:
            assert visitor.ended
            continue
        assert counted >= limit  # stopped only once the day was used up
        assert not visitor.ended  # a started response is never ended as if whole
        status, message, retry_after = failure.refusal
        assert status == 429 and retry_after and retry_after > 0
        assert "of traffic for today (plan Free)" in message


def test_a_response_whose_first_piece_finds_the_day_used_up_sends_no_head() -> None:
    quota = Quota(0, 10, 0, 0)
    carrier = Carrier(quota)
    assert quota.spend(10)  # the day is used up by an earlier exchange
    failure, progress, visitor = asyncio.run(one(carrier, [], [100]))
    assert isinstance(failure, DayUsed)
    assert not progress.started and visitor.sent == []  # the caller can still answer 429


def test_a_refused_piece_is_not_counted_and_an_empty_end_is_never_refused() -> None:
    quota = Quota(0, 10, 0, 0)
    carrier = Carrier(quota)
    failure, _, visitor = asyncio.run(one(carrier, [], [10]))  # exactly the day's bytes
    assert failure is None and visitor.ended and visitor.got == 10
    assert quota.usage is not None and quota.usage.local_day_bytes == 10
    failure, progress, _ = asyncio.run(one(carrier, [5], []))
    assert isinstance(failure, DayUsed) and progress.body == 0
    assert quota.usage.local_day_bytes == 10


def test_without_a_day_limit_bytes_are_still_counted_and_nothing_is_cut() -> None:
    quota = Quota(5, 0, 0, 0)  # requests per minute only: the day's bytes are still kept
    failure, progress, visitor = asyncio.run(one(Carrier(quota), [300, 300], [1000, 1000]))
    assert failure is None and visitor.got == 2000 and progress.body == 600
    assert quota.usage is not None and quota.usage.local_day_bytes == 2600
