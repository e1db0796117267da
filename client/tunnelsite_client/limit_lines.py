"""The `limit reached:` line, once per limit and window (docs/quotas.md: "a line when one is
reached").

lt asks the tunnel's status every LIMIT_POLL_S while the plan has limits; a reached limit is
answered with what its visitors are told, which counts down ("...; it resets at 12:01:00 UTC,
in 19 s."). Each answer differs from the last, so printing on change said a daily limit once a
minute and a per-minute one every poll. A limit is the same one in the same window as long as
the text without its countdown is the same (the reset time names the window): printed once;
again when it is reached in a new window (another reset time), or after an answer said
nothing is reached.
"""

from __future__ import annotations

import re

# The countdown at the end of the relay's text (relay/pool/quota.py): ", in 19 s." or
# ", in 5 h 3 min.".
_COUNTDOWN = re.compile(r",? in [0-9][^,;]*$")


class LimitLines:
    """Which status answers get a line (sans-IO: fed each answer, returns the line)."""

    def __init__(self) -> None:
        self._said = ""  # the limit and window last printed, "": none reached since

    def line(self, reached: str | None) -> str | None:
        """The line to print for one status answer (`reached`: the relay's text, "" none
        reached, None no sound answer), or None."""
        if reached is None:  # the relay did not answer: nothing is known to have changed
            return None
        window = _COUNTDOWN.sub("", reached.strip())
        if not window:
            self._said = ""
            return None
        if window == self._said:
            return None
        self._said = window
        return f"limit reached: {reached}"
