"""The dashboard's traffic chart: an hour of per-minute totals as server-rendered SVG.

Bars are bytes per minute (in, with out stacked on top); the line is requests per minute on
its own scale. No script, no external assets: the page swaps the whole SVG when it updates.
The colours are presentation attributes, so a page's stylesheet may restyle them by class
(`rect.in`, `rect.out`, `polyline.requests`, `text.bytes`, `text.requests`, `text.axis`): the
account page does, for its light and dark themes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from relay.face import Minute
from tunnels.sizes import binary

WIDTH, HEIGHT = 760, 200
LEFT, RIGHT, TOP, BOTTOM = 76, 76, 14, 26  # room for the axis labels
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
BASE = TOP + PLOT_H
IN_COLOUR, OUT_COLOUR, REQUESTS_COLOUR = "#79aec8", "#264b5d", "#ba2121"


def _y(value: int, peak: int) -> float:
    return TOP + PLOT_H * (1 - value / peak)


def _describe(minute: Minute) -> str:
    requests, bytes_in, bytes_out = minute.counts
    at = datetime.fromtimestamp(minute.start, UTC).strftime("%H:%M")
    plural = "" if requests == 1 else "s"
    return f"{at} UTC: {requests} request{plural}, {binary(bytes_in)} in, {binary(bytes_out)} out"


def _bar(x: float, width: float, minute: Minute, bytes_peak: int) -> SafeString:
    _, bytes_in, bytes_out = minute.counts
    in_top = _y(bytes_in, bytes_peak)
    out_top = _y(bytes_in + bytes_out, bytes_peak)
    return format_html(
        '<g class="minute"><title>{tip}</title>'
        '<rect class="in" x="{x}" y="{in_top}" width="{w}" height="{in_h}" fill="{in_c}"/>'
        '<rect class="out" x="{x}" y="{out_top}" width="{w}" height="{out_h}" fill="{out_c}"/>'
        "</g>",
        tip=_describe(minute),
        x=f"{x:.1f}",
        w=f"{width:.1f}",
        in_top=f"{in_top:.1f}",
        in_h=f"{BASE - in_top:.1f}",
        out_top=f"{out_top:.1f}",
        out_h=f"{in_top - out_top:.1f}",
        in_c=IN_COLOUR,
        out_c=OUT_COLOUR,
    )


def traffic_svg(minutes: Sequence[Minute], chart_id: str = "traffic") -> SafeString:
    """One hour, oldest minute on the left, the current (partial) minute on the right.
    `chart_id` keeps the title's id unique when a page shows several charts."""
    slot = PLOT_W / max(1, len(minutes))
    bytes_peak = max([m.counts.bytes_in + m.counts.bytes_out for m in minutes] + [1])
    requests_peak = max([m.counts.requests for m in minutes] + [1])
    bars = mark_safe(  # each piece built by format_html
        "".join(_bar(LEFT + i * slot + 1, slot - 2, m, bytes_peak) for i, m in enumerate(minutes))
    )
    points = " ".join(
        f"{LEFT + (i + 0.5) * slot:.1f},{_y(m.counts.requests, requests_peak):.1f}"
        for i, m in enumerate(minutes)
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" '
        'role="img" aria-labelledby="{cid}-title" class="traffic-chart">'
        '<title id="{cid}-title">Traffic per minute over the last hour</title>'
        '<line class="axis" x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="#999"/>'
        "{bars}"
        '<polyline class="requests" fill="none" stroke="{rc}" stroke-width="2" points="{pts}"/>'
        '<g font-size="11" font-family="sans-serif">'
        '<text class="bytes" x="{lx}" y="{ty}" text-anchor="end" fill="{oc}">{bytes_peak}/min'
        "</text>"
        '<text class="bytes" x="{lx}" y="{base}" text-anchor="end" fill="{oc}">0 bytes</text>'
        '<text class="requests" x="{rx}" y="{ty}" fill="{rc}">{requests_peak} req/min</text>'
        '<text class="requests" x="{rx}" y="{base}" fill="{rc}">0 req</text>'
        '<text class="axis" x="{left}" y="{ly}" fill="#666">60 min ago</text>'
        '<text class="axis" x="{mid}" y="{ly}" text-anchor="middle" fill="#666">30 min ago</text>'
        '<text class="axis" x="{right}" y="{ly}" text-anchor="end" fill="#666">now</text>'
        "</g></svg>",
        cid=chart_id,
        w=WIDTH,
        h=HEIGHT,
        left=LEFT,
        right=LEFT + PLOT_W,
        mid=LEFT + PLOT_W // 2,
        base=BASE,
        bars=bars,
        rc=REQUESTS_COLOUR,
        oc=OUT_COLOUR,
        pts=points,
        lx=LEFT - 6,
        rx=LEFT + PLOT_W + 6,
        ty=TOP + 10,
        ly=HEIGHT - 6,
        bytes_peak=binary(bytes_peak),
        requests_peak=requests_peak,
    )
