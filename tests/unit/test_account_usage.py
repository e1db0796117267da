"""The sans-IO account usage (relay/pool/usage.py) and the quota's checks on it."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.pool.quota import Quota
from relay.pool.usage import DAY, MINUTE, Usage, UsageBook, account_of, day_of, minute_of
from relay.records import UsageDelta

WALL = 1_699_999_980.0 + 5  # five seconds into a UTC minute
LIMIT = 7


class Store:
    """Redis's or the database's arithmetic: totals per window, every node together."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str, int], tuple[int, int]] = {}

    def add(self, deltas: list[UsageDelta]) -> dict[tuple[str, str, int], tuple[int, int]]:
        for d in deltas:
            key = (d.owner, d.window, d.start)
            requests, size = self.totals.get(key, (0, 0))
            self.totals[key] = (requests + d.requests, size + d.bytes)
        return {
            (d.owner, d.window, d.start): self.totals[(d.owner, d.window, d.start)] for d in deltas
        }


def _quota(usage: Usage) -> Quota:
    return Quota(per_minute=LIMIT, per_day_bytes=0, max_body_bytes=0, idle_timeout_s=0, usage=usage)


# op: (node 0/1, kind) kind 0 = a request, 1 = a batch that works, 2 = a batch that fails
OPS = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_no_interleaving_of_batches_lets_more_than_one_batch_past_the_limit(ops) -> None:
    store = Store()
    nodes = [Usage("user:1", WALL), Usage("user:1", WALL)]
    quotas = [_quota(u) for u in nodes]
    admitted = [0, 0]
    # What each node's view holds of the other's admissions (as of its last good batch).
    seen_of_other = [0, 0]
    flushed = [0, 0]
    for node, kind in ops:
        other = 1 - node
        if kind == 0:
            total = admitted[0] + admitted[1]
            refusal = quotas[node].take_request(WALL)
            if refusal is None:
                # Admitted: it was below the limit as far as anyone could know in a batch.
                assert total < LIMIT + (admitted[other] - seen_of_other[node])
                admitted[node] += 1
            else:
                assert refusal[0] == 429
                assert total >= LIMIT  # never refused below the limit
        else:
            deltas = nodes[node].take()
            if kind == 2:
                nodes[node].give_back(deltas)
            else:
                nodes[node].absorb(store.add(deltas))
                flushed[node] = admitted[node]
                seen_of_other[node] = flushed[other]
        assert admitted[node] <= LIMIT  # a node alone never passes it
        assert nodes[node].minute_requests(WALL) >= admitted[node]


def test_the_minute_and_the_day_are_utc_windows() -> None:
    assert minute_of(WALL) == WALL - 5 and minute_of(WALL) % 60 == 0
    assert day_of(WALL) % 86400 == 0 and 0 <= WALL - day_of(WALL) < 86400


def test_a_new_minute_starts_the_count_again_but_not_the_days_bytes() -> None:
    usage = Usage("user:1", WALL, minute_requests=LIMIT, day_bytes=500)
    quota = Quota(
        per_minute=LIMIT, per_day_bytes=1000, max_body_bytes=0, idle_timeout_s=0, usage=usage
    )
    assert quota.take_request(WALL) is not None
    assert quota.take_request(WALL + 60) is None
    usage.add_bytes(500)
    assert quota.over_day_bytes(wall=WALL + 61)
    status, message, wait = quota.take_request(WALL + 61)
    assert status == 429 and "1000 B of traffic for today" in message and wait > 3600


def test_the_refusal_names_the_limit_its_value_the_plan_and_the_reset() -> None:
    usage = Usage("user:1", WALL, minute_requests=600)
    quota = Quota(600, 0, 0, 0, plan="Free", usage=usage)
    status, message, wait = quota.take_request(WALL)
    assert (status, wait) == (429, 55)
    assert message.startswith("This tunnel's account has used its 600 requests for this minute")
    assert "(plan Free)" in message and "UTC, in 55 s." in message


def test_deltas_given_back_after_a_failed_batch_are_sent_with_the_next() -> None:
    usage = Usage("addr:127.0.0.2", WALL)
    usage.count_request()
    usage.add_bytes(10)
    usage.give_back(usage.take())
    deltas = {(d.window, d.requests, d.bytes) for d in usage.take()}
    assert deltas == {(MINUTE, 1, 0), (DAY, 1, 10)}


def test_an_anonymous_owner_counts_under_its_address() -> None:
    assert account_of("ip:127.0.0.2") == "addr:127.0.0.2"
    assert account_of("user:4") == "user:4"


class FlakyStore:
    """A usage store that fails until told otherwise (Redis or the database down)."""

    def __init__(self) -> None:
        self.down = True
        self.arithmetic = Store()

    async def add(self, deltas: list[UsageDelta]) -> dict[tuple[str, str, int], tuple[int, int]]:
        if self.down:
            raise ConnectionError("store down")
        return self.arithmetic.add(deltas)

    async def read(self, owner: str, minute: int, day: int) -> tuple[int, int, int]:
        raise ConnectionError("store down")

    async def prune(self, before: int) -> None:
        pass

    async def close(self) -> None:
        pass


def test_a_store_outage_keeps_counting_warns_once_and_sends_everything_after(caplog) -> None:
    async def scenario() -> tuple[bool, bool, bool, tuple[int, int]]:
        book = UsageBook(SimpleNamespace(RELAY_FLUSH_S=60.0, REDIS_URL=""))
        store = FlakyStore()
        book.store = store  # type: ignore[assignment]
        usage = await book.attach("user:7")  # the read fails: it starts from zero, no error
        usage.count_request()
        usage.add_bytes(100)
        first = await book.flush()
        usage.add_bytes(50)
        second = await book.flush()
        store.down = False
        third = await book.flush()
        await book.stop()
        day = store.arithmetic.totals[("user:7", DAY, usage.day)]
        return first, second, third, day

    with caplog.at_level(logging.WARNING, logger="relay.pool.usage"):
        first, second, third, day = asyncio.run(scenario())
    assert (first, second, third) == (False, False, True)
    assert day == (1, 150)  # nothing counted during the outage was lost
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "unavailable" in w]) == 1
    assert any("is back" in w for w in warnings)


class GatedStore(FlakyStore):
    """A store whose batch waits at the gate (a slow Redis) until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.batches = 0

    async def add(self, deltas: list[UsageDelta]) -> dict[tuple[str, str, int], tuple[int, int]]:
        self.batches += 1
        self.entered.set()
        await self.gate.wait()
        return await super().add(deltas)

    async def read(self, owner: str, minute: int, day: int) -> tuple[int, int, int]:
        return 0, 0, 0


def test_a_batch_in_flight_at_shutdown_is_finished_not_lost_or_sent_twice() -> None:
    async def scenario() -> tuple[tuple[int, int], int]:
        # RELAY_FLUSH_S=0: the loop starts its batch at once (the book's own loop is tested)
        book = UsageBook(SimpleNamespace(RELAY_FLUSH_S=0.0, REDIS_URL=""))
        store = GatedStore()
        book.store = store  # type: ignore[assignment]
        usage = await book.attach("user:9")  # starts the batches
        usage.count_request()
        usage.add_bytes(300)
        async with asyncio.timeout(5):
            await store.entered.wait()  # the batch holds these counts, in flight
        usage.add_bytes(20)  # counted after the batch took its counts
        loop_task = book._task
        assert loop_task is not None
        # The gate opens only once stop() has cancelled the loop: the batch is in flight then.
        loop_task.add_done_callback(lambda _: store.gate.set())
        async with asyncio.timeout(5):
            await book.stop()
        return store.arithmetic.totals[("user:9", DAY, usage.day)], store.batches

    day, batches = asyncio.run(scenario())
    assert day == (1, 320)  # the batch in flight, then the last counts: each once
    assert batches == 2
