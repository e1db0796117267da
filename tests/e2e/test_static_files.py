"""The admin's CSS in production: a real relay with `DEBUG=false` serves /static/ itself.

WhiteNoise serves the files `runrelay` collected at start (hashed names, gzip copies, cached
for ever), on the bare domain only: on a tunnel's host, /static/ is the tunnel's own path.
"""

from __future__ import annotations

import gzip
import re
import secrets
import socket
from collections.abc import Callable

import pytest
from harness.fake_client import PoolSocket
from harness.http import Answer, build_request
from harness.relay import Relay, issue_token, manage
from harness.waiting import IO_TIMEOUT_S

# What a production operator sets (README, Quick start): the setting under test is DEBUG.
PRODUCTION = {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50)}


@pytest.fixture(scope="module")
def production(module_relay_factory: Callable[..., Relay]) -> Relay:
    """One production relay for the tests that only ask it (each start collects the static
    files); the test that stops its relay and reads its whole log starts its own."""
    return module_relay_factory(**PRODUCTION)


def stylesheets(html: str) -> list[str]:
    return re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)


def test_the_production_admin_links_hashed_stylesheets_that_answer_css(production: Relay) -> None:
    relay = production
    page = relay.get("/admin/login/")
    assert page.status == 200, page
    links = stylesheets(page.text)
    assert links, page.text
    for link in links:
        css = relay.get(link)
        assert css.status == 200, (link, css)
        # The manifest storage's hashed name: cached for ever, changed when the file does.
        assert re.fullmatch(r"/static/admin/css/[\w/.-]+\.[0-9a-f]{12}\.css", link), link
        assert (css.header("content-type") or "").startswith("text/css"), css.headers
        assert "immutable" in (css.header("cache-control") or ""), css.headers
        assert b"{" in css.body and b"}" in css.body
    base = next(link for link in links if "/base." in link)
    zipped = relay.get(base, headers=[("Accept-Encoding", "gzip")])
    assert zipped.header("content-encoding") == "gzip", zipped.headers
    assert gzip.decompress(zipped.body) == relay.get(base).body


@pytest.mark.parametrize("mode", ["production", "development"])
def test_a_missing_or_escaping_static_path_is_a_404_not_a_file_or_a_registration(
    relay_factory: Callable[..., Relay], production: Relay, mode: str
) -> None:
    relay = production if mode == "production" else relay_factory()
    answer = relay.get("/static/admin/css/no-such-file.css")
    assert answer.status == 404, answer
    # Nothing outside the collected files: not the code, not the settings.
    for target in [
        "/static/../tunnelsite/settings.py",
        "/static/%2e%2e/tunnelsite/settings.py",
        "/static/..%2ftunnelsite%2fsettings.py",
        "/static//etc/passwd",
        "/static/admin/../../manage.py",
    ]:
        answer = relay.get(target)
        assert answer.status in (400, 404), (target, answer)
        assert b"SECRET_KEY" not in answer.body and b"root:" not in answer.body, target


def test_static_paths_on_a_tunnel_host_reach_the_tunnel_not_the_relays_files(
    production: Relay,
) -> None:
    relay = production
    token = issue_token(relay, "static-tester", "test")
    registered = relay.get("/?new", headers=[("Authorization", f"Bearer {token}")])
    assert registered.status == 200, registered
    info = registered.json()
    pool = PoolSocket(socket.create_connection(("127.0.0.1", info["port"]), IO_TIMEOUT_S))
    try:
        relay.wait_for_sockets(info["id"], 1)
        with relay.visitor(info["id"]) as visitor:
            visitor.send(build_request("GET", "/static/admin/css/base.css", visitor.host))
            request = pool.read_request()
            assert request.target == "/static/admin/css/base.css"
            pool.respond(200, b"the tunnel's own file")
            answer = visitor.response()
        assert answer.status == 200, answer
        assert answer.body == b"the tunnel's own file"
    finally:
        pool.close()


def test_static_answers_whole_partial_or_headless_leave_no_error_in_the_log(
    relay_factory: Callable[..., Relay],
) -> None:
    """Visitors that hang up the moment they have every byte (as curl does) must not leave
    Django waiting on the file, logging an aborted request at each."""
    relay = relay_factory(**PRODUCTION)
    link = stylesheets(relay.get("/admin/login/").text)[0]
    whole = relay.get(link)
    for _ in range(10):
        assert relay.get(link) == whole
        part = relay.get(link, headers=[("Range", "bytes=0-9")])
        assert part.status == 206 and part.body == whole.body[:10], part
        head = relay.request("HEAD", link)
        assert head.status == 200 and head.body == b"", head
    assert relay.process.stop() == 0
    assert "Traceback" not in relay.process.output(), relay.process.output()


def _cookies(answer: Answer) -> dict[str, str]:
    return dict(
        value.split(";", 1)[0].split("=", 1)
        for name, value in answer.headers
        if name == "set-cookie"
    )


def test_the_production_account_page_links_its_hashed_stylesheet_and_script(
    production: Relay,
) -> None:
    """The account page's hand-written CSS and JS (issue 14) are served like the admin's."""
    relay = production
    manage(relay, "shell", "-c", _USER)
    form = relay.get("/accounts/login/")
    jar = _cookies(form)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    body = f"csrfmiddlewaretoken={token}&username=sam&password=static-files-password".encode()
    signed_in = relay.request(
        "POST",
        "/accounts/login/",
        headers=[
            ("Cookie", f"csrftoken={jar['csrftoken']}"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body=body,
    )
    assert signed_in.status == 302 and signed_in.header("location") == "/account/", signed_in
    session = _cookies(signed_in)["sessionid"]
    page = relay.get("/account/", headers=[("Cookie", f"sessionid={session}")])
    assert page.status == 200, page
    links = stylesheets(page.text) + re.findall(r'<script src="([^"]+)"', page.text)
    kinds = {"css": "text/css", "js": "text/javascript"}
    assert [link.rsplit(".", 1)[1] for link in links] == ["css", "js"], links
    for link in links:
        assert re.fullmatch(r"/static/tunnels/account\.[0-9a-f]{12}\.(css|js)", link), link
        served = relay.get(link)
        assert served.status == 200, (link, served)
        assert (served.header("content-type") or "").startswith(kinds[link.rsplit(".", 1)[1]])
        assert "immutable" in (served.header("cache-control") or ""), served.headers


_USER = (
    "from django.contrib.auth.models import User; "
    "User.objects.create_user('sam', password='static-files-password')"
)
