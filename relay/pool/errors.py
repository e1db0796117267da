"""What goes wrong in the pool: a registration the registry refuses (with what the client
is told), and a pool socket that fails mid-exchange."""

from __future__ import annotations


class RegistrationError(Exception):
    """A registration that cannot succeed; `status` and `message` go to the client, with
    `reason` (protocol.REFUSAL_HEADER) and a Retry-After when set."""

    def __init__(
        self, status: int, message: str, *, reason: str = "", retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.retry_after = retry_after


class PoolError(Exception):
    """The pool socket failed mid-exchange; the visitor gets a 502."""
