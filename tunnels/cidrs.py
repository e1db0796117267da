"""CIDR lists as operators type them in the admin (one per line) and clients send them: parsed,
validated and normalised here, with no Django beyond the validation error."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from relay.protocol import Network, parse_networks


def parse(values: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """The networks, or ValueError naming the first that is not one (the relay's parser, so
    the admin, lt's rules and the relay's checks read a network the same way)."""
    return parse_networks(values)


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def validate_lines(text: str) -> None:
    """A model field validator: one network per line (commas also separate)."""
    try:
        parse(lines(text))
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
