"""The client's visitor-rule bounds and CIDR rule are the relay's: `lt` refuses, as a usage
error, what the relay would refuse with a 400, and sends networks the relay reads the same.

The client imports nothing from the server, so it keeps copies (client/tunnelsite_client/limits.py,
client/tunnelsite_client/access.py); these tests pin them to relay.protocol and tunnels/cidrs.py.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay import protocol
from tunnels import cidrs
from tunnelsite_client import access, limits

BOUNDS = ["MAX_BASIC_AUTH_USERS", "MAX_BASIC_AUTH_CHARS", "MAX_CIDRS", "MAX_ACCESS_HEADER_BYTES"]


@pytest.mark.parametrize("name", BOUNDS)
def test_the_client_bounds_are_the_relays(name):
    assert getattr(limits, name) == getattr(protocol, name)


def test_the_header_name_is_the_relays():
    assert access.ACCESS_HEADER == protocol.ACCESS_HEADER


# Text made of what addresses are made of, so most draws are near-addresses.
CIDR_CHARS = "0123456789abcdef.:/% x"


@given(st.one_of(st.text(), st.text(alphabet=CIDR_CHARS, max_size=45)))
@example("fe80::1%eth0/64")  # the relay takes a zone; the client refuses it (no network)
@example("10.1.2.3/8")
@example("2001:db8::1")
@example(" 10.0.0.0/8")
def test_what_the_client_sends_the_relay_reads_as_the_same_network(text):
    try:
        sent = access.check_cidr(text, "--cidr-allow")
    except ValueError as exc:
        assert str(exc).startswith("--cidr-allow: ")
        # Refused here: the relay refuses it too, or it names an IPv6 zone (no network).
        try:
            cidrs.parse([text])
        except ValueError:
            return
        assert "%" in text or not text.strip()
        return
    (network,) = cidrs.parse([sent])
    assert cidrs.parse([text]) == (network,)
    assert str(network) == sent == str(ipaddress.ip_network(sent))
