"""relay.protocol.local_path: the one rule for where a visitor goes back after the team
sign-in (/visit/'s `next`), a ticket or Continue: a path on the same host, or "/"."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.utils.http import url_has_allowed_host_and_scheme
from hypothesis import given
from hypothesis import strategies as st

from relay import protocol


@given(st.text(max_size=80) | st.builds(lambda s: "/" + s, st.text(max_size=80)))
def test_it_is_the_path_itself_or_slash_never_another_site(text: str) -> None:
    path = protocol.local_path(text)
    assert path in ("/", text)
    parts = urlsplit(path)
    assert not parts.scheme and not parts.netloc
    assert url_has_allowed_host_and_scheme(path, allowed_hosts=None)


def test_known_escapes_and_oversized_values_become_slash() -> None:
    for text in (
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\tx",
        "/caf\u00e9",
        "/" + "a" * protocol.MAX_NEXT_CHARS,
        "",
        "page",
    ):
        assert protocol.local_path(text) == "/", text
    assert protocol.local_path("/page?x=1#top") == "/page?x=1#top"
