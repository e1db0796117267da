"""The text format (the default) keeps today's lines; the access log is off unless asked for,
in either format. Real relays, our lt and the local app."""

from __future__ import annotations

import json
import re

from harness.our_client import OurLtLauncher
from harness.waiting import IO_TIMEOUT_S, wait_until

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")


def visit_and_close(relay, local_app, our_launcher: OurLtLauncher) -> str:
    """Our lt online, four visits (one with a newline in its path), then lt stopped and its
    tunnel closed: the tunnel's name."""
    lt = our_launcher(relay, local_app.port)
    for _ in range(3):
        assert relay.get("/hello", name=lt.name).status == 200
    assert relay.get("/missing%0Aforged%20line", name=lt.name).status == 404
    lt.process.stop()
    wait_until(
        lambda: f"tunnel {lt.name} closed" in relay.process.output(),
        IO_TIMEOUT_S,
        "the tunnel's closing line",
    )
    return lt.name


def test_the_default_is_text_lines_as_before_and_no_access_log(
    relay_factory, local_app, our_launcher
):
    relay = relay_factory()
    name = visit_and_close(relay, local_app, our_launcher)
    logged = [line for line in relay.process.output().splitlines() if TEXT_LINE.match(line)]
    assert any(
        line.endswith(f"INFO relay.pool.registry: tunnel {name} opened for 127.0.0.1 "
                      "(upgraded pool connections)")
        for line in logged
    ), logged  # fmt: skip
    assert any(line.endswith(f"tunnel {name} closed: closed by client") for line in logged)
    assert not any(line.startswith("{") for line in relay.process.output().splitlines())
    assert "relay.access" not in relay.process.output()
    assert "GET /hello" not in relay.process.output()


def test_json_without_the_access_log_has_no_access_line(relay_factory, local_app, our_launcher):
    relay = relay_factory(RELAY_LOG_FORMAT="json")
    name = visit_and_close(relay, local_app, our_launcher)
    records = [json.loads(line) for line in relay.process.output().splitlines() if line[:1] == "{"]
    events = [record.get("event") for record in records]
    assert "tunnel_opened" in events and "tunnel_closed" in events
    assert not [record for record in records if record["logger"] == "relay.access"]
    assert all(record.get("tunnel") in (None, name) for record in records)


def test_the_text_access_log_is_one_combined_like_line_per_request(
    relay_factory, local_app, our_launcher
):
    relay = relay_factory(RELAY_ACCESS_LOG="true")
    name = visit_and_close(relay, local_app, our_launcher)
    access = [line for line in relay.process.output().splitlines() if " relay.access: " in line]
    assert len(access) == 4, access
    assert all(TEXT_LINE.match(line) for line in access)
    assert sum(f'127.0.0.1 {name} "GET /hello" 200 0 ' in line for line in access) == 3
    # A decoded %0A would have started a line of the visitor's making: it stays escaped.
    assert sum(f'{name} "GET /missing%0Aforged line" 404 0 ' in line for line in access) == 1
    assert not any(line.startswith("forged") for line in relay.process.output().splitlines())
