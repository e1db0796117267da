"""Which pool `lt` opens, and where it lets it go: it asks for the upgraded pool on every
registration (X-Tunnelsite-Pool: upgrade) unless --raw-pool; it refuses an http pool URL
from an https relay (unless --insecure); and a plain-http relay on loopback is never sent
through a forward proxy elsewhere, so a token cannot reach a remote proxy in clear.

The relay is the relay double (harness/relay_double.py), over TLS with a trustme CA where
TLS is the point, giving an upgraded pool (`pool_scheme`) where that is the point; `lt` is
the real command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness.lt_process import LtProcess, name_of
from harness.relay_double import RelayDouble

from tunnelsite_client import open_tunnel_sync
from tunnelsite_client.arguments import UsageError, parse_settings
from tunnelsite_client.connect import RelayConnector, plain_http_token_refusal
from tunnelsite_client.registration import (
    POOL_KIND_HEADER,
    POOL_KIND_UPGRADE,
    RegistrationError,
    parse_registration,
)

TOKEN = "lt_k3x9q2abSECRETtokenNEVERprinted"
SECRET = "ab" * 32
OPERATOR_FIX = "RELAY_PUBLIC_SCHEME=https"
# Does not resolve anywhere (RFC 6761): lt reaching for it could not serve.
REMOTE_PROXY = "http://proxy.invalid:3128"


@pytest.fixture(autouse=True)
def own_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """parse_settings reads the saved login: never the real one."""
    monkeypatch.setenv("LT_CONFIG_DIR", str(tmp_path / "cfg"))


def serves(lt: LtProcess, relay: RelayDouble, path: str) -> str:
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    answer = relay.request(name, "GET", path)
    assert answer.status == 200 and answer.json()["path"] == path
    return name


# -- 1. the upgraded pool is asked for; --raw-pool does not ask ---------------------------


def test_every_registration_asks_for_the_upgraded_pool(
    relay: RelayDouble, app, run_lt: Callable[..., LtProcess]
) -> None:
    relay.pool_scheme = "http"
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    serves(lt, relay, "/asked")
    headers = relay.registrations[0].headers
    assert headers[POOL_KIND_HEADER.lower()] == POOL_KIND_UPGRADE
    assert len(relay.upgrade_heads) >= relay.max_conn_count  # every pool socket upgraded


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_raw_pool_omits_the_header_and_opens_raw_pool_sockets(
    how: str, relay: RelayDouble, app, run_lt: Callable[..., LtProcess]
) -> None:
    relay.pool_scheme = "http"  # the double would give an upgraded pool if asked
    args = ["--port", str(app.port), "--host", relay.url]
    lt = run_lt(*args, "--raw-pool") if how == "flag" else run_lt(*args, env={"RAW_POOL": "1"})
    serves(lt, relay, "/raw")
    assert POOL_KIND_HEADER.lower() not in relay.registrations[0].headers
    assert relay.upgrade_heads == []  # raw sockets: no upgrade request at all
    assert relay.registrations[0].headers["x-tunnelsite-client"]  # still known as our lt


def test_raw_pool_declines_a_pool_url_the_relay_gives_all_the_same() -> None:
    """An older relay gives the upgraded pool to our lt on its client id alone."""
    body = b'{"id": "quiet-fox", "port": 40000, "max_conn_count": 10, "url": "https://x",'
    body += b' "pool_url": "https://relay.example/p", "pool_secret": "' + SECRET.encode() + b'"}'
    reg = parse_registration("https://relay.example", body, raw_pool=True)
    assert (reg.pool_url, reg.pool_secret, reg.port) == (None, "", 40000)


def test_raw_pool_from_a_relay_without_a_raw_port_is_a_clear_error_at_once() -> None:
    body = b'{"id": "quiet-fox", "port": 0, "max_conn_count": 10, "url": "https://x",'
    body += b' "pool_url": "https://relay.example/p", "pool_secret": "' + SECRET.encode() + b'"}'
    with pytest.raises(RegistrationError, match="no raw pool port.*without --raw-pool") as err:
        parse_registration("https://relay.example", body, raw_pool=True)
    assert err.value.lasting


def test_the_library_takes_raw_pool(relay: RelayDouble, app) -> None:
    relay.pool_scheme = "http"
    with open_tunnel_sync(app.port, relay.url, raw_pool=True) as tunnel:
        name = name_of(tunnel.url)
        relay.wait_for_sockets(name)
        assert relay.request(name, "GET", "/lib-raw").json()["path"] == "/lib-raw"
    assert relay.upgrade_heads == []


def test_help_says_what_raw_pool_costs(run_lt: Callable[..., LtProcess]) -> None:
    lt = run_lt("--help")
    assert lt.wait() == 0
    text = " ".join(" ".join(lt.lines).split())
    assert "--raw-pool" in text and "unencrypted and bound to your address" in text


# -- 2. an https relay's pool URL must be https too ---------------------------------------


def test_an_http_pool_url_from_an_https_relay_stops_lt_at_the_first_registration(
    tls_relay: RelayDouble, ca_file: str, app, run_lt: Callable[..., LtProcess]
) -> None:
    tls_relay.pool_scheme = "http"
    lt = run_lt(
        "--port", str(app.port), "--host", f"https://localhost:{tls_relay.port}", "--ca", ca_file
    )
    assert lt.wait() == 1
    message = "\n".join(lt.errors)
    assert "lt: cannot reach the relay:" in message and OPERATOR_FIX in message, message
    assert "--insecure" in message and "Traceback" not in message
    assert len(tls_relay.registrations) == 1  # lasting: not asked again
    assert tls_relay.pool_connections == 0  # nothing went to the clear pool URL


def test_insecure_accepts_an_http_pool_url_from_an_https_relay(
    tls_relay: RelayDouble, app, run_lt: Callable[..., LtProcess]
) -> None:
    tls_relay.pool_scheme = "http"
    host = f"https://localhost:{tls_relay.port}"
    lt = run_lt("--port", str(app.port), "--host", host, "--insecure")
    serves(lt, tls_relay, "/insecure-pool")
    assert tls_relay.upgrade_heads  # over the http pool URL it was given


def test_an_https_pool_url_on_another_host_is_fine(
    tls_relay: RelayDouble, ca_file: str, app, run_lt: Callable[..., LtProcess]
) -> None:
    """A cluster sends the client to the owner node's RELAY_NODE_URL: another host."""
    tls_relay.pool_scheme, tls_relay.pool_host = "https", "localhost"
    host = f"https://127.0.0.1:{tls_relay.port}"
    lt = run_lt("--port", str(app.port), "--host", host, "--ca", ca_file)
    serves(lt, tls_relay, "/other-node")
    assert tls_relay.upgrade_heads[0].startswith("GET /api/tunnels/")
    assert "\r\nHost: localhost:" in tls_relay.upgrade_heads[0]


@pytest.mark.parametrize(
    ("relay", "pool_url", "allowed"),
    [
        ("https://relay.example", "https://node-2.relay.example:8443/p", True),
        ("https://relay.example", "http://relay.example/p", False),
        ("https://relay.example", "http://node-2.relay.example/p", False),
        ("http://relay.example", "http://node-2.relay.example/p", True),
        ("http://relay.example", "https://relay.example/p", True),
    ],
)
def test_a_pool_url_may_be_another_host_but_never_a_weaker_scheme(
    relay: str, pool_url: str, allowed: bool
) -> None:
    body = (
        '{"id": "quiet-fox", "port": 0, "max_conn_count": 10, "url": "https://x", '
        f'"pool_url": "{pool_url}", "pool_secret": "{SECRET}"}}'
    ).encode()
    if allowed:
        assert parse_registration(relay, body).pool_url == pool_url
    else:
        with pytest.raises(RegistrationError, match=OPERATOR_FIX) as refused:
            parse_registration(relay, body)
        assert refused.value.lasting and SECRET not in str(refused.value)
    assert parse_registration(relay, body, insecure=True).pool_url == pool_url


# -- 3. a token never reaches a remote proxy in clear -------------------------------------


def test_a_loopback_relay_is_not_sent_to_a_proxy_elsewhere(
    relay: RelayDouble, app, run_lt: Callable[..., LtProcess]
) -> None:
    """HTTP_PROXY names a proxy that cannot be reached: lt serves all the same, so neither the
    token nor anything else went there (it would have CONNECTed to the proxy's localhost)."""
    host = f"http://localhost:{relay.port}"
    lt = run_lt("--port", str(app.port), "--host", host, "--token", TOKEN, env={
        "HTTP_PROXY": REMOTE_PROXY, "HTTPS_PROXY": REMOTE_PROXY
    })  # fmt: skip
    serves(lt, relay, "/not-proxied")
    assert relay.registrations[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "proxy" not in "\n".join(lt.errors + lt.lines).lower()


@pytest.mark.parametrize("relay_host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_relays_go_through_a_loopback_proxy_only(relay_host: str) -> None:
    remote = RelayConnector.from_environment({"HTTP_PROXY": REMOTE_PROXY})
    local = RelayConnector.from_environment({"HTTP_PROXY": "http://127.0.0.1:3128"})
    host = relay_host.strip("[]")
    assert remote.proxy_for(host, False) is None
    assert local.proxy_for(host, False) is not None
    assert remote.proxy_for("relay.example", False) is not None  # other hosts: proxied


def test_a_token_to_a_plain_http_relay_through_a_remote_proxy_is_refused() -> None:
    with pytest.raises(UsageError, match="through the proxy at http://proxy.invalid:3128"):
        parse_settings(
            ["--port", "3000", "--host", "http://relay.example", "--token", TOKEN],
            {"HTTP_PROXY": REMOTE_PROXY},
        )
    # A loopback relay through a loopback proxy: the token stays on this machine.
    settings = parse_settings(
        ["--port", "3000", "--host", "http://localhost:8080", "--token", TOKEN],
        {"HTTP_PROXY": "http://127.0.0.1:3128"},
    )
    assert settings.options.token == TOKEN
    # Through a remote proxy the loopback relay is reached directly: allowed.
    direct = parse_settings(
        ["--port", "3000", "--host", "http://localhost:8080", "--token", TOKEN],
        {"HTTP_PROXY": REMOTE_PROXY},
    )
    assert direct.options.token == TOKEN


def test_the_rule_counts_a_relay_behind_a_remote_proxy_as_not_loopback() -> None:
    """The rule itself, for a connector that would send a loopback relay to a remote proxy."""

    class Everywhere(RelayConnector):
        def proxy_for(self, host: str, tls: bool):  # type: ignore[no-untyped-def]
            return self.http_proxy

    proxied = Everywhere.from_environment({"HTTP_PROXY": REMOTE_PROXY})
    refusal = plain_http_token_refusal("http://localhost:8080", TOKEN, False, proxied)
    assert refusal is not None and "proxy.invalid" in refusal
    assert plain_http_token_refusal("http://localhost:8080", TOKEN, True, proxied) is None
    assert plain_http_token_refusal("http://localhost:8080", None, False, proxied) is None
