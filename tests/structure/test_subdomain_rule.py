"""The lt client checks a requested name before it asks (client/registration.py); the relay
decides (relay/protocol.py). The client imports nothing of the server, so the rule is
written twice: this pins the copy to the original, so a name one accepts the other does."""

from __future__ import annotations

import pytest

from client import registration
from relay import protocol

NAMES = [
    "abcd",  # 4 alphanumerics: the shortest plain name
    "abc",  # too short
    "my-app",  # inner hyphen, 6 characters
    "my-a",  # hyphenated names need 6 or more
    "-myapp",
    "myapp-",
    "MyApp",  # upper case is not in the rule
    "a" * 63,
    "a" * 64,
    "a" + "-" * 63 + "b",  # 65 characters with inner hyphens: the longest
    "a" + "-" * 64 + "b",
    "under_score",
    "",
]


def test_the_clients_subdomain_rule_is_the_relays() -> None:
    assert registration.SUBDOMAIN_RE.pattern == protocol.SUBDOMAIN_RE.pattern


@pytest.mark.parametrize("name", NAMES)
def test_client_and_relay_agree_on(name: str) -> None:
    assert registration.is_valid_subdomain(name) == protocol.is_valid_subdomain(name)
