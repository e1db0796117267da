"""/metrics in Prometheus' text format: what the relay holds and counted, read at scrape time.

Nothing here runs per request. A scrape (on the relay's event loop: the bare domain's view
through relay.face, or relay/run/metrics_listener.py) reads the registry (live tunnels,
pool sockets, waiters, requests in flight, each tunnel's requests and bytes), relay/stats.py
(what happened: answers by class, the relay's own 5xx by cause, registrations, forwards,
WebSockets, TCP connections, and what closed tunnels carried) and the request inspector's
store, and yields metric families. Labels are bounded: `node` (RELAY_NODE_NAME, "" on a
single relay) and `plan` (the plan a tunnel registered under: the operator's plans);
RELAY_METRICS_PER_TUNNEL adds series with a `tunnel` label, one set per live tunnel
(`per_tunnel_text`, written by hand for speed). The process collectors (CPU, memory,
descriptors, GC) go on this module's own registry, not prometheus_client's global one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from relay.pool import captures
from relay.pool.registry import Registry, get_registry
from relay.pool.tunnel import Tunnel
from relay.stats import CAUSES, STATS, Closed, Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")  # status // 100 from 1 to 5; the rest: "other"


@dataclass(slots=True)
class _PlanRow:
    """One plan's live tunnels, summed at scrape time."""

    http: int = 0
    tcp: int = 0
    sockets: int = 0
    idle: int = 0
    waiting: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


def _plans(tunnels: Iterable[Tunnel], closed: dict[str, Closed]) -> dict[str, _PlanRow]:
    rows: dict[str, _PlanRow] = {}
    for tunnel in tunnels:
        row = rows.get(tunnel.plan)
        if row is None:
            row = rows[tunnel.plan] = _PlanRow()
        if tunnel.tcp is None:
            row.http += 1
        else:
            row.tcp += 1
        row.sockets += len(tunnel.connections)
        row.idle += len(tunnel.idle)
        row.waiting += len(tunnel.waiters)
        row.requests += tunnel.requests
        row.bytes_in += tunnel.bytes_in
        row.bytes_out += tunnel.bytes_out
    for plan in closed:  # a plan whose tunnels all closed still has its totals
        rows.setdefault(plan, _PlanRow())
    return rows


class RelayCollector(Collector):
    """Reads the registry, the stats and the inspector's store at each scrape."""

    def __init__(self, registry: Registry | None = None, stats: Stats = STATS) -> None:
        self.registry = registry  # None: the process's (get_registry at each scrape)
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        registry = self.registry if self.registry is not None else get_registry()
        node = str(settings.RELAY_NODE_NAME)
        yield from self._live(registry, node)
        yield from self._events(node)
        yield from self._inspector(node)

    def _live(self, registry: Registry, node: str) -> Iterator[Metric]:
        stats = self.stats
        rows = _plans(registry.tunnels.values(), stats.closed_by_plan)
        labels = ["node", "plan"]
        tunnels = GaugeMetricFamily(
            "tunnelsite_tunnels",
            "Live tunnels on this relay (their clients connected, or in the reconnect grace "
            "period), by plan and kind (http, tcp).",
            labels=[*labels, "kind"],
        )
        sockets = GaugeMetricFamily(
            "tunnelsite_pool_sockets", "Pool sockets connected to live tunnels.", labels=labels
        )
        idle = GaugeMetricFamily(
            "tunnelsite_pool_sockets_idle",
            "Of those, the ones idle now (ready for the next visitor).",
            labels=labels,
        )
        waiting = GaugeMetricFamily(
            "tunnelsite_visitors_waiting",
            "Visitors waiting for a free pool socket (RELAY_SOCKET_WAIT_S at most).",
            labels=labels,
        )
        requests = CounterMetricFamily(
            "tunnelsite_requests",
            "Requests to tunnels: HTTP requests, WebSocket handshakes and TCP connections "
            "that reached a pool socket.",
            labels=labels,
        )
        bytes_in = CounterMetricFamily(
            "tunnelsite_bytes_in",
            "Bytes from visitors to tunnels' apps (HTTP request bodies, WebSocket messages, "
            "TCP data).",
            labels=labels,
        )
        bytes_out = CounterMetricFamily(
            "tunnelsite_bytes_out",
            "Bytes from tunnels' apps to visitors (HTTP response bodies, WebSocket messages, "
            "TCP data).",
            labels=labels,
        )
        closed = CounterMetricFamily(
            "tunnelsite_tunnels_closed", "Tunnels closed on this relay.", labels=labels
        )
        for plan, row in sorted(rows.items()):
            gone = stats.closed_by_plan.get(plan) or Closed()
            tunnels.add_metric([node, plan, "http"], row.http)
            tunnels.add_metric([node, plan, "tcp"], row.tcp)
            sockets.add_metric([node, plan], row.sockets)
            idle.add_metric([node, plan], row.idle)
            waiting.add_metric([node, plan], row.waiting)
            requests.add_metric([node, plan], row.requests + gone.requests)
            bytes_in.add_metric([node, plan], row.bytes_in + gone.bytes_in)
            bytes_out.add_metric([node, plan], row.bytes_out + gone.bytes_out)
            closed.add_metric([node, plan], gone.tunnels)
        yield from (tunnels, sockets, idle, waiting, requests, bytes_in, bytes_out, closed)
        in_flight = GaugeMetricFamily(
            "tunnelsite_requests_in_flight",
            "Visitors' requests and WebSockets being served now (forwarded ones too).",
            labels=["node"],
        )
        in_flight.add_metric([node], registry.in_flight)
        accepting = GaugeMetricFamily(
            "tunnelsite_accepting",
            "1 while this relay registers tunnels, 0 once it drains (shutting down).",
            labels=["node"],
        )
        accepting.add_metric([node], 1 if registry.accepting else 0)
        websockets = GaugeMetricFamily(
            "tunnelsite_websockets_open",
            "WebSockets carried to tunnels' apps now.",
            labels=["node"],
        )
        websockets.add_metric([node], stats.websockets_opened - stats.websockets_closed)
        tcp = GaugeMetricFamily(
            "tunnelsite_tcp_connections_open",
            "TCP tunnels' visitor connections open now (waiting for a pool connection, or "
            "carried).",
            labels=["node"],
        )
        tcp.add_metric(
            [node], sum(t.tcp.live for t in registry.tunnels.values() if t.tcp is not None)
        )
        yield from (in_flight, accepting, websockets, tcp)

    def _events(self, node: str) -> Iterator[Metric]:
        stats = self.stats
        responses = CounterMetricFamily(
            "tunnelsite_responses",
            "Answers to visitors of tunnels' hosts by status class: the apps' and the "
            "relay's own (a request forwarded to another node counts on both).",
            labels=["node", "class"],
        )
        for index, name in enumerate(_CLASSES, start=1):
            responses.add_metric([node, name], stats.responses[index])
        other = sum(stats.responses) - sum(stats.responses[1 : len(_CLASSES) + 1])
        responses.add_metric([node, "other"], other)
        errors = CounterMetricFamily(
            "tunnelsite_relay_errors",
            "The relay's own 502, 503 and 504 answers, by status and cause (docs/metrics.md "
            "lists the causes).",
            labels=["node", "status", "cause"],
        )
        for cause, status, _ in CAUSES:
            errors.add_metric([node, str(status), cause], getattr(stats, cause))
        registrations = CounterMetricFamily(
            "tunnelsite_registrations",
            "Tunnel registrations by outcome: ok, or the status of the refusal.",
            labels=["node", "outcome"],
        )
        for outcome, count in stats.registrations.items():
            registrations.add_metric([node, outcome], count)
        forwards = CounterMetricFamily(
            "tunnelsite_cluster_forwards",
            "Visitors' requests and WebSockets sent on to the node that owns the tunnel.",
            labels=["node", "kind"],
        )
        forwards.add_metric([node, "http"], stats.forwarded_http)
        forwards.add_metric([node, "websocket"], stats.forwarded_websockets)
        websockets = CounterMetricFamily(
            "tunnelsite_websockets_opened",
            "WebSocket handshakes sent to tunnels' apps over a pool socket.",
            labels=["node"],
        )
        websockets.add_metric([node], stats.websockets_opened)
        tcp = CounterMetricFamily(
            "tunnelsite_tcp_connections_opened",
            "Visitor connections admitted to TCP tunnels.",
            labels=["node"],
        )
        tcp.add_metric([node], stats.tcp_opened)
        yield from (responses, errors, registrations, forwards, websockets, tcp)

    def _inspector(self, node: str) -> Iterator[Metric]:
        store = captures.in_use()
        if store is None:  # no tunnel kept requests since the relay started
            return
        used = GaugeMetricFamily(
            "tunnelsite_inspector_memory_bytes",
            "Memory the request inspector's kept exchanges hold (RELAY_INSPECT_MEMORY_BYTES "
            "at most).",
            labels=["node"],
        )
        used.add_metric([node], store.used)
        kept = GaugeMetricFamily(
            "tunnelsite_inspector_exchanges",
            "Exchanges the request inspector keeps now, all tunnels together.",
            labels=["node"],
        )
        kept.add_metric([node], len(store.order))
        yield from (used, kept)


# The per-tunnel series (RELAY_METRICS_PER_TUNNEL), written here rather than as metric
# families: five lines per tunnel, and prometheus_client formats each sample with its label
# checks and escapes: 210 ms a scrape for 5,000 tunnels (blocking the relay's loop), where
# this takes 15 ms. Each tunnel's labels are made once; names need no escape
# (protocol.SUBDOMAIN_RE), a plan's or node's name is escaped as the text format says.
_PER_TUNNEL = (
    ("tunnelsite_tunnel_requests_total", "counter", "Requests to each live tunnel."),
    ("tunnelsite_tunnel_bytes_in_total", "counter", "Bytes from visitors to each live tunnel."),
    ("tunnelsite_tunnel_bytes_out_total", "counter", "Bytes from each live tunnel to visitors."),
    ("tunnelsite_tunnel_pool_sockets", "gauge", "Each live tunnel's pool sockets."),
    (
        "tunnelsite_tunnel_visitors_waiting",
        "gauge",
        "Visitors waiting for each live tunnel's pool sockets.",
    ),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def per_tunnel_text(tunnels: Iterable[Tunnel], node: str) -> str:
    """The per-tunnel series of `tunnels`, in Prometheus' text format."""
    rows = []
    node_label = f'node="{_escape(node)}",plan="'
    for tunnel in sorted(tunnels, key=lambda tunnel: tunnel.name):
        labels = f'{{{node_label}{_escape(tunnel.plan)}",tunnel="{_escape(tunnel.name)}"}} '
        rows.append(
            (
                labels,
                tunnel.requests,
                tunnel.bytes_in,
                tunnel.bytes_out,
                len(tunnel.connections),
                len(tunnel.waiters),
            )
        )
    parts = []
    for index, (name, kind, meaning) in enumerate(_PER_TUNNEL, start=1):
        parts.append(f"# HELP {name} {meaning} (RELAY_METRICS_PER_TUNNEL)\n# TYPE {name} {kind}\n")
        parts.extend(f"{name}{row[0]}{row[index]}\n" for row in rows)
    return "".join(parts)


def _registry() -> CollectorRegistry:
    """The relay's own registry: its collector and the process's (never the global one,
    which a library imported by the relay could fill)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector())
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


_REGISTRY = _registry()


def text() -> bytes:
    """The whole exposition, in Prometheus' text format (call it on the relay's loop)."""
    body = generate_latest(_REGISTRY)
    if settings.RELAY_METRICS_PER_TUNNEL:
        tunnels = get_registry().tunnels.values()
        body += per_tunnel_text(tunnels, str(settings.RELAY_NODE_NAME)).encode()
    return body
