"""A visitor connection's idle timeout, kept without a timer operation per request.

Twisted's HTTP channel keeps its idle timeout (`RELAY_IDLE_TIMEOUT_S`) with TimeoutMixin: it
cancels the timer when a request's body is in, schedules a new one when the response is
done, and moves it on every read. On the asyncio reactor each of those is a heap operation
and a reschedule of the loop's timer: about 4% of the relay's CPU per small request.

`IdleTimer` keeps the same rule (the connection is closed once it has been idle for the
period; no timeout while a request is answered) with one timer per connection that is
rarely touched: switching the timeout off only records it, a read or a new period only
moves the deadline, and when the timer fires before the deadline it is set again for the
rest. The timer is cancelled when the connection is lost, so nothing holds a closed
connection until it fires."""

from __future__ import annotations

import daphne.server  # noqa: F401  isort:skip  (installs the asyncio reactor first)

from typing import Any

from twisted.internet import reactor as twisted_reactor
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http

# The reactor's methods are declared on zope interfaces without `self`: untyped here.
reactor: Any = twisted_reactor


class IdleTimer(http.HTTPChannel):
    """TimeoutMixin's `setTimeout`/`resetTimeout`/`timeoutConnection`, lazily."""

    _idle_call: Any = None  # the one timer; it may fire before the deadline
    _idle_deadline = 0.0  # reactor.seconds() at which the connection has idled out

    def setTimeout(self, period: float | None) -> float | None:  # noqa: N802
        previous: float | None = self.timeOut
        self.timeOut = period  # type: ignore[assignment]
        if period is None:
            return previous  # the timer stays: when it fires, it finds the timeout off
        now = reactor.seconds()
        self._idle_deadline = now + period
        call = self._idle_call
        if call is None:
            self._idle_call = self.callLater(period, self._idle_check)
        elif call.getTime() > self._idle_deadline:  # a shorter period than the timer's
            call.reset(period)
        return previous

    def resetTimeout(self) -> None:  # noqa: N802
        period: float | None = self.timeOut
        if period is not None and self._idle_call is not None:
            self._idle_deadline = reactor.seconds() + period

    def _idle_check(self) -> None:
        self._idle_call = None
        if self.timeOut is None:
            return  # off while a request is answered: the response's end sets it again
        left = self._idle_deadline - reactor.seconds()
        if left > 0:
            self._idle_call = self.callLater(left, self._idle_check)
            return
        self.timeoutConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.stop_idle()

    def stop_idle(self) -> None:
        """Cancel the timer: the connection is lost, or handed to another protocol (a
        WebSocket, our lt's pool connection) whose end this channel never hears of."""
        self.timeOut = None
        call, self._idle_call = self._idle_call, None
        if call is not None and call.active():
            call.cancel()
