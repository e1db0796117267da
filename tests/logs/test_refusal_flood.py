"""A client that repeats a refused registration in a loop cannot fill the log, nor hide another
client's refusals: per minute at most relay/protocol.py's REFUSAL_LINES_PER_ADDRESS
`registration_refused` lines per client address (tunnels/refusal_log.py)."""

from __future__ import annotations

import json

from harness.waiting import IO_TIMEOUT_S, wait_until

from relay.protocol import REFUSAL_LINES_PER_ADDRESS, REFUSAL_LINES_PER_WINDOW


def refusals(relay):
    lines = relay.process.output().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [r for r in records if r.get("event") == "registration_refused"]


def test_a_looping_clients_refusals_past_its_share_are_counted_and_others_still_logged(
    relay_factory,
):
    relay = relay_factory(RELAY_LOG_FORMAT="json")
    loops = REFUSAL_LINES_PER_WINDOW + 5  # once, one loop took the whole process's lines
    for _ in range(loops):
        assert relay.register("Not_A_Name").status == 403
    assert relay.register("also_bad", source="127.0.0.2").status == 403
    # The relay's output is read as it comes: the last line may follow its answer.
    wait_until(
        lambda: any(r["client_ip"] == "127.0.0.2" for r in refusals(relay)),
        IO_TIMEOUT_S,
        "the other address's refusal line",
    )
    refused = refusals(relay)
    looping = [r for r in refused if r["client_ip"] == "127.0.0.1"]
    assert len(looping) == REFUSAL_LINES_PER_ADDRESS
    assert all(r["requested"] == "Not_A_Name" and r["status"] == 403 for r in looping)
    (other,) = [r for r in refused if r["client_ip"] == "127.0.0.2"]
    assert other["requested"] == "also_bad"
    assert other["left_out"] == loops - REFUSAL_LINES_PER_ADDRESS


def test_status_and_delete_calls_for_unknown_tunnels_are_not_registration_refusals(
    relay_factory,
):
    """Only a registration's refusal is a `registration_refused` line: our lt's status poll
    and DELETE for a name that is not live (once logged with `requested:
    "api/tunnels/zz/status"`) spent the refusal lines' ration."""
    relay = relay_factory(RELAY_LOG_FORMAT="json")
    calls = REFUSAL_LINES_PER_ADDRESS + 2  # more than the address's share, were they counted
    for _ in range(calls):
        assert relay.get("/api/tunnels/zz/status").status == 404
        assert relay.request("DELETE", "/api/tunnels/zz").status == 404
        assert relay.get("/api/tunnels/zz").status == 405
    assert relay.register("Not_A_Name").status == 403
    # Lines come in order: once the registration's refusal is read, any line the calls
    # above wrote would have been read before it.
    wait_until(lambda: refusals(relay), IO_TIMEOUT_S, "the registration's refusal line")
    (refused,) = refusals(relay)
    assert refused["requested"] == "Not_A_Name" and refused["left_out"] == 0
