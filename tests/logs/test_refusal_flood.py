"""A client that repeats a refused registration in a loop cannot fill the log: at most
tunnels/refusal_log.py's BURST `registration_refused` lines a minute per relay process."""

from __future__ import annotations

import json

from tunnels.refusal_log import BURST


def test_refusals_past_the_burst_are_counted_not_logged(relay_factory):
    relay = relay_factory(RELAY_LOG_FORMAT="json")
    for _ in range(BURST + 15):
        assert relay.register("Not_A_Name").status == 403
    assert relay.register("also_bad").status == 403
    lines = relay.process.output().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    refused = [r for r in records if r.get("event") == "registration_refused"]
    assert len(refused) == BURST
    assert all(r["requested"] == "Not_A_Name" and r["status"] == 403 for r in refused)
