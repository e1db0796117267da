"""What lt prints of a relay's text (a plan's name, a reached limit, a refusal's message, a
cached URL) reaches the terminal without a control, escape or bidi character and without a
line break of its own (client/tunnelsite_client/printable.py): a relay chooses that text, and
printed raw it once coloured and retitled the user's terminal and forged lines of lt's."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from tunnelsite_client.display import LiveDisplay, PlainDisplay
from tunnelsite_client.limits import LIMIT_POLL_S
from tunnelsite_client.registration import describe_limits
from tunnelsite_client.reporting import LogReporter, TunnelStatus

if TYPE_CHECKING:
    from harness.local_apps import ThreadedHttpApp
    from harness.relay_double import RelayDouble

# ESC and an SGR colour, an OSC window title ended by BEL, a right-to-left override, an
# 8-bit CSI, a NUL, a line break forging a line of lt's own, a line separator.
HOSTILE = (
    "esc\x1b[31mRED\x1b]0;PWNED\x07\u202eevil\x9b2J\x00\nyour url is: http://evil.example\u2028x"
)
FORGED = "your url is: http://evil.example"


def shown_whole(lines: list[str]) -> None:
    """No character a terminal acts on, and no line lt did not write."""
    for line in lines:
        assert line.isprintable(), repr(line)
        assert not line.startswith(FORGED), line


def test_every_relay_text_lt_prints_is_printable(
    relay: RelayDouble, app: ThreadedHttpApp, run_lt
) -> None:
    relay.forced.append((503, HOSTILE))  # "registration failed: ...; registering again"
    relay.answer_extra = {
        "limits": {"plan": HOSTILE, "requests_per_minute": 5, "bytes_per_day": 1_000_000},
        "cached_url": HOSTILE,
    }
    relay.limit_reached = f"This tunnel's account has used its 5 requests {HOSTILE}"
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    lt.wait_for_line(
        r"limits: 5 requests a minute, 977 KiB a day \(UTC\) \(plan esc\[31mRED\]0;PWNEDevil2J"
    )
    lt.wait_for_line(
        r"limit reached: This tunnel's account has used its 5 requests esc\[31mRED",
        timeout=LIMIT_POLL_S + 10,
    )
    assert any("registration failed: esc[31mRED" in line for line in lt.lines), lt.lines
    assert any("your cachedurl is: esc[31mRED" in line for line in lt.lines), lt.lines
    lt.stop()
    shown_whole(lt.lines + lt.errors)

    relay.forced.append((403, HOSTILE))  # a refusal: lt stops with the relay's message
    refused = run_lt("--port", str(app.port), "--host", relay.url)
    assert refused.wait() != 0
    assert any("refused the tunnel: esc[31mRED" in line for line in refused.errors), refused.errors
    shown_whole(refused.lines + refused.errors)


@given(text=st.text())
def test_a_plans_name_in_the_limits_line_is_printable_whatever_it_is(text: str) -> None:
    line = describe_limits({"plan": text, "requests_per_minute": 1})
    assert line.isprintable() and line.startswith("1 requests a minute")


def test_every_place_lt_shows_text_drops_what_a_terminal_acts_on(caplog) -> None:
    """The sinks: plain lines, the live status block's cells, the library's log lines."""
    out = io.StringIO()
    plain = PlainDisplay(out)
    plain.event(HOSTILE)
    plain.url(HOSTILE)
    shown_whole(out.getvalue().splitlines())

    status = TunnelStatus(url=HOSTILE, relay=HOSTILE, state=HOSTILE, last_error=HOSTILE)
    status.visitors = status.limits = status.forwarding = HOSTILE
    live = LiveDisplay()
    live._status = status
    console = Console(file=io.StringIO(), color_system=None, width=400, force_terminal=False)
    console.print(live._render())
    rendered = console.file.getvalue()  # type: ignore[attr-defined]
    shown_whole(rendered.splitlines())
    assert rendered.count("esc[31mRED]0;PWNEDevil") == 6

    with caplog.at_level(logging.INFO, logger="tunnelsite_client"):
        LogReporter().event(HOSTILE)
        LogReporter().url(HOSTILE)
    shown_whole([r.getMessage() for r in caplog.records])
