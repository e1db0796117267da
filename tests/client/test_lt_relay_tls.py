"""`lt` verifies the relay's certificate (`--ca FILE`, `CA`, `--insecure`), and never sends a
token over plain http to a host that is not loopback.

The relay is the relay double speaking HTTPS with a certificate from a trustme CA (its pool
sockets stay raw, as the relay's raw pool ports); `lt` is the real command.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from harness.lt_process import LtProcess, name_of
from harness.relay_double import RelayDouble, tls_double

from tunnelsite_client import TunnelError, open_tunnel_sync
from tunnelsite_client.arguments import UsageError, parse_settings
from tunnelsite_client.config import Login, login_path, save_login
from tunnelsite_client.connect import INSECURE_WARNING, is_loopback
from tunnelsite_client.options import TunnelOptions
from tunnelsite_client.tunnel import CannotConnect, ClientTunnel

TOKEN = "lt_k3x9q2abSECRETtokenNEVERprinted"
UNTRUSTED = "the relay's certificate is not trusted"


@pytest.fixture(autouse=True)
def own_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """parse_settings reads the saved login: never the real one."""
    monkeypatch.setenv("LT_CONFIG_DIR", str(tmp_path / "cfg"))


def https_url(relay: RelayDouble, host: str = "localhost") -> str:
    return f"https://{host}:{relay.port}"


def assert_serves(lt: LtProcess, relay: RelayDouble) -> None:
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    answer = relay.request(name, "GET", "/through-tls")
    assert answer.status == 200
    assert answer.json()["path"] == "/through-tls"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_lt_trusts_the_relay_signed_by_the_ca_it_is_given(
    how: str, tls_relay: RelayDouble, ca_file: str, app, run_lt: Callable[..., LtProcess]
) -> None:
    args = ["--port", str(app.port), "--host", https_url(tls_relay), "--token", TOKEN]
    if how == "flag":
        lt = run_lt(*args, "--ca", ca_file)
    else:
        lt = run_lt(*args, env={"CA": ca_file})
    assert_serves(lt, tls_relay)
    # The token went to the relay inside TLS (the double read it after the handshake).
    assert tls_relay.registrations[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert not any("WARNING" in line for line in lt.errors + lt.lines)


def test_without_its_ca_lt_stops_at_once_saying_the_certificate_is_not_trusted(
    tls_relay: RelayDouble, app, run_lt: Callable[..., LtProcess]
) -> None:
    lt = run_lt("--port", str(app.port), "--host", https_url(tls_relay), "--token", TOKEN)
    assert lt.wait() == 1
    message = "\n".join(lt.errors)
    assert f"lt: cannot reach the relay: {UNTRUSTED}" in message
    assert "--ca FILE" in message and "--insecure" in message
    assert "Traceback" not in message
    assert tls_relay.registrations == []  # nothing was sent: the handshake failed first
    assert TOKEN not in "\n".join(lt.lines + lt.errors)


def test_a_certificate_for_another_name_is_refused_even_from_a_trusted_ca(
    ca: trustme.CA, ca_file: str, app, run_lt: Callable[..., LtProcess]
) -> None:
    relay = tls_double(ca, "relay.example")
    try:
        lt = run_lt("--port", str(app.port), "--host", https_url(relay), "--ca", ca_file)
        assert lt.wait() == 1
        message = "\n".join(lt.errors)
        assert "the relay's certificate is not valid for this name" in message, message
        assert "mismatch" in message.lower()
        assert relay.registrations == []
    finally:
        relay.shutdown()


def test_insecure_skips_the_check_and_says_so_loudly(
    tls_relay: RelayDouble, app, run_lt: Callable[..., LtProcess]
) -> None:
    lt = run_lt("--port", str(app.port), "--host", https_url(tls_relay), "--insecure")
    assert_serves(lt, tls_relay)
    assert lt.errors[0] == INSECURE_WARNING
    assert "anyone on the path can read and change" in lt.errors[0]


def test_once_up_a_refused_certificate_is_retried_until_the_relay_is_fixed(
    tls_relay: RelayDouble, ca: trustme.CA, ca_file: str, app, run_lt: Callable[..., LtProcess]
) -> None:
    lt = run_lt("--port", str(app.port), "--host", https_url(tls_relay), "--ca", ca_file)
    url = lt.url()
    name = name_of(url)
    tls_relay.wait_for_sockets(name)
    # The relay comes back with a certificate from another CA (a renewal gone wrong).
    tls_relay.stop()
    mark = len(lt.lines)
    wrong = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost", "127.0.0.1").configure_cert(wrong)
    tls_relay.start(port=tls_relay.port, tls=wrong)
    lt.wait_for_line(rf"unreachable: {UNTRUSTED}.*registering again", after=mark, timeout=15)
    assert lt.proc.poll() is None  # still trying: the tunnel had been up
    # Fixed: the same URL serves again.
    tls_relay.stop()
    right = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(right)
    tls_relay.start(port=tls_relay.port, tls=right)
    lt.wait_for_line(rf"registered again as {url}$", after=mark, timeout=40)
    tls_relay.wait_for_sockets(name)
    assert tls_relay.request(name, "GET", "/fixed").json()["path"] == "/fixed"


# -- a token never goes over plain http to a host that is not loopback -------------------

REFUSED = "refusing to send a token over plain http to relay.example"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--host", "http://relay.example", "--token", TOKEN], {}),
        (["--host", "http://relay.example"], {"LT_TOKEN": TOKEN}),
        ([], {"HOST": "http://relay.example", "LT_TOKEN": TOKEN}),
        (["--host", f"http://{TOKEN}@relay.example"], {}),
        (["--host", "http://relay.example:8080", "--token", TOKEN], {}),
    ],
)
def test_a_token_is_refused_over_plain_http_to_another_host(
    argv: list[str], env: dict[str, str]
) -> None:
    with pytest.raises(UsageError) as refused:
        parse_settings(["--port", "3000", *argv], env)
    assert REFUSED in str(refused.value)
    assert "https://" in str(refused.value) and "--insecure" in str(refused.value)


def test_a_saved_login_for_a_plain_http_host_is_not_used_without_insecure() -> None:
    save_login(Login("http://relay.example", TOKEN))
    with pytest.raises(UsageError, match=REFUSED):
        parse_settings(["--port", "3000"], {})
    allowed = parse_settings(["--port", "3000", "--insecure"], {})
    assert allowed.options.token == TOKEN and allowed.options.insecure is True


@pytest.mark.parametrize(
    "host",
    ["http://127.0.0.1:8080", "http://127.8.9.10", "http://localhost:8080", "http://[::1]:8080"],
)
def test_a_token_may_go_over_plain_http_to_loopback(host: str) -> None:
    settings = parse_settings(["--port", "3000", "--host", host, "--token", TOKEN], {})
    assert settings.options.token == TOKEN


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["--insecure"], {}), ([], {"INSECURE": "true"})],
)
def test_insecure_allows_a_token_over_plain_http(argv: list[str], env: dict[str, str]) -> None:
    settings = parse_settings(
        ["--port", "3000", "--host", "http://relay.example", "--token", TOKEN, *argv], env
    )
    assert settings.options.insecure is True and settings.options.token == TOKEN


def test_plain_http_without_a_token_is_fine() -> None:
    assert parse_settings(["--port", "3000", "--host", "http://relay.example"], {}).options


def test_loopback_is_localhost_127_8_and_the_ipv6_loopback_only() -> None:
    assert all(map(is_loopback, ["localhost", "LOCALHOST", "127.0.0.1", "127.255.0.9", "::1"]))
    assert not any(
        map(is_loopback, ["relay.example", "10.0.0.1", "localhost.example", "128.0.0.1", "::2"])
    )


def test_the_library_refuses_a_token_over_plain_http_and_a_missing_ca_too(
    tmp_path: Path,
) -> None:
    options = TunnelOptions(port=3000, host="http://relay.example", token=TOKEN)
    with pytest.raises(ValueError, match=REFUSED):
        ClientTunnel(options)
    missing = TunnelOptions(port=3000, host="https://relay.example", ca=str(tmp_path / "no.pem"))
    with pytest.raises(ValueError, match="ca: no such file"):
        ClientTunnel(missing)


def test_lt_exits_2_before_any_connection_and_never_prints_the_token(
    run_lt: Callable[..., LtProcess],
) -> None:
    # relay.example does not resolve here: the refusal comes before any connection.
    lt = run_lt("--port", "3000", "--host", "http://relay.example", "--token", TOKEN)
    assert lt.wait() == 2
    assert REFUSED in "\n".join(lt.errors)
    assert TOKEN not in "\n".join(lt.lines + lt.errors)


def test_lt_login_refuses_to_save_a_token_for_plain_http(
    run_lt: Callable[..., LtProcess], lt_env: dict[str, str]
) -> None:
    lt = run_lt("login", "--host", "http://relay.example", "--token", TOKEN)
    assert lt.wait() == 2
    assert f"lt login: {REFUSED}" in "\n".join(lt.errors)
    assert TOKEN not in "\n".join(lt.lines + lt.errors)
    assert not (Path(lt_env["LT_CONFIG_DIR"]) / login_path().name).exists()
    allowed = run_lt("login", "--host", "http://relay.example", "--token", TOKEN, "--insecure")
    assert allowed.wait() == 0
    loopback = run_lt("login", "--host", "http://127.0.0.1:8080", "--token", TOKEN)
    assert loopback.wait() == 0


def test_a_ca_file_must_exist_and_be_a_ca(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--ca: no such file"):
        parse_settings(["--port", "3000", "--ca", str(tmp_path / "missing.pem")], {})
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(UsageError, match="CA \\(environment\\).*not a PEM CA file"):
        parse_settings(["--port", "3000"], {"CA": str(junk)})


def test_help_lists_the_new_flags(run_lt: Callable[..., LtProcess]) -> None:
    lt = run_lt("--help")
    assert lt.wait() == 0
    text = "\n".join(lt.lines)
    assert "--ca FILE" in text and "--insecure" in text and "HTTPS_PROXY" in text


# -- the library: the same checks as keywords ------------------------------------------


def test_the_library_takes_ca_and_refuses_an_untrusted_relay_at_once(
    tls_relay: RelayDouble, ca_file: str, app
) -> None:
    with open_tunnel_sync(app.port, https_url(tls_relay), token=TOKEN, ca=ca_file) as tunnel:
        name = name_of(tunnel.url)
        tls_relay.wait_for_sockets(name)
        assert tls_relay.request(name, "GET", "/lib-tls").json()["path"] == "/lib-tls"
    with pytest.raises(CannotConnect, match=UNTRUSTED) as refused:
        open_tunnel_sync(app.port, https_url(tls_relay), token=TOKEN)
    assert isinstance(refused.value, TunnelError)  # what library users already catch
    assert TOKEN not in str(refused.value)


def test_the_library_logs_the_insecure_warning(
    tls_relay: RelayDouble, app, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tunnelsite_client"):
        with open_tunnel_sync(app.port, https_url(tls_relay), insecure=True) as tunnel:
            assert tunnel.url
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("certificate is not checked" in text for text in warnings), warnings
