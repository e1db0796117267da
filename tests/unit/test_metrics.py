"""relay/stats.py, relay/metrics.py's collector and the metrics listener's answers, fed
values: a registry with tunnels made by hand, request heads as bytes."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from relay.metrics import RelayCollector, per_tunnel_text
from relay.pool.registry import Registry
from relay.pool.tunnel import Tunnel
from relay.run.metrics_listener import respond
from relay.stats import CAUSES, REGISTRATION_OUTCOMES, STATS, Stats
from tunnels.registration import _counted


def exposition(registry: Registry, stats: Stats) -> str:
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(RelayCollector(registry, stats))
    return generate_latest(collectors).decode()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def tunnel(registry: Registry, name: str, plan: str, requests: int = 0) -> Tunnel:
    made = Tunnel(
        name=name, owner="ip:127.0.0.1", client_ip="127.0.0.1", max_conn_count=10, registry=registry
    )
    made.plan = plan
    made.requests = requests
    made.bytes_out = requests * 100
    registry.tunnels[name] = made
    return made


def test_registration_outcomes_are_a_fixed_set() -> None:
    stats = Stats()
    for status in (200, 200, 401, 403, 418, 500, 429):
        stats.registration(status)
    assert stats.registrations == {
        **dict.fromkeys(REGISTRATION_OUTCOMES, 0),
        "ok": 2,
        "401": 1,
        "403": 1,
        "429": 1,
        "other": 2,
    }


def test_every_cause_is_a_field_and_a_502_503_or_504() -> None:
    stats = Stats()
    for cause, status, meaning in CAUSES:
        assert getattr(stats, cause) == 0 and status in (502, 503, 504) and meaning
    assert len({cause for cause, _, _ in CAUSES}) == len(CAUSES)


def test_closed_tunnels_keep_their_totals_per_plan() -> None:
    registry, stats = Registry(settings), Stats()
    gone = tunnel(registry, "gone-tunnel", "team", requests=5)
    gone.session_id = 1  # it opened (its registration wrote its row)
    del registry.tunnels["gone-tunnel"]
    stats.tunnel_closed(gone)
    tunnel(registry, "live-tunnel", "team", requests=2)
    text = exposition(registry, stats)
    assert samples(text, "tunnelsite_requests_total") == {(("node", ""), ("plan", "team")): 7}
    assert samples(text, "tunnelsite_bytes_out_total") == {(("node", ""), ("plan", "team")): 700}
    assert samples(text, "tunnelsite_tunnels_closed_total") == {(("node", ""), ("plan", "team")): 1}
    assert (
        samples(text, "tunnelsite_tunnels")[(("kind", "http"), ("node", ""), ("plan", "team"))] == 1
    )


PLANS = ("hyp-free", "hyp-team")  # this test's own rows of the process's STATS
COUNTERS = (
    "tunnelsite_requests_total",
    "tunnelsite_bytes_in_total",
    "tunnelsite_bytes_out_total",
    "tunnelsite_tunnels_closed_total",
)
Step = tuple[str, int, int, int]
STEPS = st.one_of(
    st.tuples(st.just("open"), st.integers(0, 1), st.integers(0, 1), st.just(0)),
    st.tuples(st.just("request"), st.integers(0, 9), st.just(0), st.just(0)),
    st.tuples(st.just("bytes"), st.integers(0, 9), st.integers(0, 5000), st.integers(0, 5000)),
    st.tuples(st.just("close"), st.integers(0, 9), st.just(0), st.just(0)),
)


def by_plan(text: str) -> dict[tuple[str, str], float]:
    return {
        (name, plan): samples(text, name).get((("node", ""), ("plan", plan)), 0.0)
        for name in COUNTERS
        for plan in PLANS
    }


# Each step scrapes the whole exposition (the process' collectors too): no per-example
# deadline, which a loaded machine overran, and fewer examples of up to 40 steps.
@hypothesis_settings(deadline=None, max_examples=60)
@given(st.lists(STEPS, max_size=40))
def test_the_counters_count_every_request_and_byte_once_and_never_go_down(
    steps: list[Step],
) -> None:
    """Tunnels open (or are closed before they ever opened: a registration refused after
    its Tunnel was made), carry requests and bytes, and close, in any order; traffic keeps
    coming after a close (an exchange still running). After each step the scraped totals
    equal what was carried, only opened tunnels count as closed, and nothing went down."""
    registry = Registry(settings)
    made: list[Tunnel] = []
    expected = dict.fromkeys(by_plan(""), 0.0)
    base = by_plan(exposition(registry, STATS))
    last = dict(base)
    for step, index, first, second in steps:
        if step == "open":
            plan = PLANS[index]
            new = Tunnel(
                name=f"hyp-{len(made)}",
                owner="ip:127.0.0.1",
                client_ip="127.0.0.1",
                max_conn_count=10,
                registry=registry,
                plan=plan,
            )
            if first:  # its registration wrote its row: it opened
                new.session_id = len(made) + 1
            registry.tunnels[new.name] = new
            made.append(new)
            continue
        if not made:
            continue
        chosen = made[index % len(made)]
        if step == "request":
            chosen.carried_request()
            expected["tunnelsite_requests_total", chosen.plan] += 1
        elif step == "bytes":
            chosen.carried(first, second)
            expected["tunnelsite_bytes_in_total", chosen.plan] += first
            expected["tunnelsite_bytes_out_total", chosen.plan] += second
        elif not chosen.closed:
            registry.close(chosen, "test")
            if chosen.session_id is not None:
                expected["tunnelsite_tunnels_closed_total", chosen.plan] += 1
        now = by_plan(exposition(registry, STATS))
        for key, value in now.items():
            assert value >= last[key], f"{key} went down: {last[key]} -> {value}"
            assert value - base[key] == expected[key], key
        last = now
    for tunnel_ in made:
        registry.close(tunnel_, "test over")


def test_a_registration_counts_once_whether_answered_raised_or_abandoned() -> None:
    """Every registration request counts once: answered (its status), or ended without an
    answer (an error, or its client left and the view was cancelled: "other")."""

    @_counted
    async def answered(request: HttpRequest, requested: str | None) -> HttpResponse:
        return HttpResponse(status=203, headers={"X-Tunnelsite-Status": "409"})

    @_counted
    async def failing(request: HttpRequest, requested: str | None) -> HttpResponse:
        raise RuntimeError("the database went away")

    async def leave() -> None:
        started = asyncio.Event()

        @_counted
        async def abandoned(request: HttpRequest, requested: str | None) -> HttpResponse:
            started.set()
            await asyncio.Event().wait()  # the client leaves meanwhile
            raise AssertionError("never answered")

        task = asyncio.ensure_future(abandoned(HttpRequest(), None))
        async with asyncio.timeout(5):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = dict(STATS.registrations)
    asyncio.run(answered(HttpRequest(), "my-app"))
    with pytest.raises(RuntimeError):
        asyncio.run(failing(HttpRequest(), None))
    asyncio.run(leave())
    moved = {k: v - before[k] for k, v in STATS.registrations.items() if v != before[k]}
    assert moved == {"409": 1, "other": 2}


def test_responses_by_class_report_1xx_to_5xx_and_the_rest_as_other() -> None:
    stats = Stats()
    for status in (101, 200, 204, 302, 404, 502, 999):
        stats.responses[status // 100] += 1
    text = exposition(Registry(settings), stats)
    by_class = {
        labels[0][1]: v for labels, v in samples(text, "tunnelsite_responses_total").items()
    }
    assert by_class == {"1xx": 1, "2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1, "other": 1}


@given(
    plans=st.lists(st.sampled_from(["free", "team", "default"]), min_size=0, max_size=60),
    per_tunnel=st.booleans(),
)
def test_series_grow_with_plans_not_tunnels_unless_per_tunnel(
    plans: list[str], per_tunnel: bool
) -> None:
    registry = Registry(settings)
    for index, plan in enumerate(plans):
        tunnel(registry, f"tunnel-{index:04d}", plan)
    text = exposition(registry, Stats())
    if per_tunnel:  # relay.metrics.text adds these with RELAY_METRICS_PER_TUNNEL
        text += per_tunnel_text(registry.tunnels.values(), "")
    with_tunnel = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "tunnel" in sample.labels
    ]
    assert len(samples(text, "tunnelsite_tunnels")) == 2 * len(set(plans))  # http, tcp
    if per_tunnel:
        assert {s.labels["tunnel"] for s in with_tunnel} == set(registry.tunnels)
    else:
        assert with_tunnel == []


def metrics_text() -> bytes:
    return b"tunnelsite_up 1\n"


def test_the_listener_answers_only_get_and_head_of_metrics() -> None:
    ok = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", metrics_text)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\ntunnelsite_up 1\n")
    assert b"Connection: close" in ok and b"Content-Length: 16" in ok
    head = respond(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", metrics_text)
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert respond(b"POST /metrics HTTP/1.1\r\n\r\n", metrics_text).startswith(b"HTTP/1.1 405 ")
    for target in (b"/", b"/metrics/", b"/admin/", b"//metrics", b"/METRICS"):
        answer = respond(b"GET " + target + b" HTTP/1.1\r\n\r\n", metrics_text)
        assert answer.startswith(b"HTTP/1.1 404 "), target
        assert b'{"message": "This listener serves only /metrics."}' in answer


@given(st.binary(max_size=200))
def test_any_head_gets_an_answer_never_an_exception(head: bytes) -> None:
    answer = respond(head, metrics_text)
    assert answer.split(b" ", 2)[1] in {b"200", b"400", b"404", b"405"}


def test_per_tunnel_labels_are_escaped_and_promtool_reads_them() -> None:
    registry = Registry(settings)
    tunnel(registry, "quiet-fox-3f9a", 'a "quoted" \\ plan\nwith a newline', requests=3)
    text = per_tunnel_text(registry.tunnels.values(), "node-1")
    (family, *_) = text_string_to_metric_families(text)
    (sample,) = family.samples
    assert sample.labels == {
        "node": "node-1",
        "plan": 'a "quoted" \\ plan\nwith a newline',
        "tunnel": "quiet-fox-3f9a",
    }
    assert (sample.name, sample.value) == ("tunnelsite_tunnel_requests_total", 3)
