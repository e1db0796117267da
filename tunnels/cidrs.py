"""CIDR lists as operators type them in the admin (one per line) and clients send them: parsed,
validated and normalised here, with no Django beyond the validation error."""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError

from relay.protocol import MAX_CIDRS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse(values: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """The networks, or ValueError naming the first that is not one (host bits are allowed
    and cleared: 10.1.2.3/8 is 10.0.0.0/8; a bare address is its /32 or /128)."""
    networks = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"{text!r} is not an address or network (examples: 203.0.113.0/24, "
                "2001:db8::/32, 198.51.100.7)"
            ) from None
    if len(networks) > MAX_CIDRS:
        raise ValueError(f"at most {MAX_CIDRS} networks, not {len(networks)}")
    return tuple(networks)


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def validate_lines(text: str) -> None:
    """A model field validator: one network per line (commas also separate)."""
    try:
        parse(lines(text))
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
