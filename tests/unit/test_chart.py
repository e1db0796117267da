"""The traffic chart is plain SVG: one bar group per minute, scaled to the busiest minute."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from relay.traffic import Counts, Minute
from tunnels.chart import BASE, PLOT_H, TOP, traffic_svg

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_800_000_000


def hour(busy: dict[int, Counts]) -> list[Minute]:
    return [Minute(T0 + 60 * i, busy.get(i, Counts())) for i in range(60)]


def parse(minutes: list[Minute]) -> ET.Element:
    return ET.fromstring(str(traffic_svg(minutes)))


def test_it_draws_one_bar_group_per_minute_with_a_tooltip() -> None:
    svg = parse(hour({59: Counts(3, 2048, 1024)}))
    groups = svg.findall(f"{SVG}g[@class='minute']")
    assert len(groups) == 60
    assert groups[-1].find(f"{SVG}title").text == ("08:59 UTC: 3 requests, 2.0 KiB in, 1.0 KiB out")
    assert groups[0].find(f"{SVG}title").text.startswith("08:00 UTC: 0 requests")


def test_the_busiest_minute_fills_the_height_and_others_scale_to_it() -> None:
    svg = parse(hour({10: Counts(1, 600, 400), 20: Counts(1, 250, 250)}))
    groups = svg.findall(f"{SVG}g[@class='minute']")

    def stacked_top(index: int) -> float:
        return float(groups[index].find(f"{SVG}rect[@class='out']").get("y"))

    assert stacked_top(10) == TOP
    assert abs(stacked_top(20) - (BASE - PLOT_H / 2)) < 0.11
    assert stacked_top(0) == BASE


def test_the_requests_line_has_a_point_per_minute_peaking_at_the_busiest() -> None:
    svg = parse(hour({30: Counts(8, 0, 0), 31: Counts(4, 0, 0)}))
    points = svg.find(f"{SVG}polyline").get("points").split()
    heights = [float(point.split(",")[1]) for point in points]
    assert len(heights) == 60
    assert heights[30] == TOP
    assert heights[31] == BASE - PLOT_H / 2
    assert heights[0] == BASE


def test_an_idle_hour_still_draws_an_empty_chart() -> None:
    svg = parse(hour({}))
    assert len(svg.findall(f"{SVG}g[@class='minute']")) == 60
    assert "now" in [text.text for text in svg.iter(f"{SVG}text")]
