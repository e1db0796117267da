"""Pure pieces of the client: settings, saved login, backoff, exit codes, parsing."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelsite_client.arguments import UsageError, parse_settings
from tunnelsite_client.backoff import FIRST_DELAY_S, MAX_DELAY_S, delay_for
from tunnelsite_client.cli import EXIT_USAGE, exit_code_for, main
from tunnelsite_client.config import Login, delete_login, load_login, login_path, save_login
from tunnelsite_client.display import human_bytes, request_line
from tunnelsite_client.http import Answer, split_userinfo
from tunnelsite_client.options import DEFAULT_HOST
from tunnelsite_client.registration import (
    MAX_POOL_SOCKETS,
    _real_status,
    _retry_after,
    auth_headers,
    is_valid_subdomain,
    parse_registration,
)
from tunnelsite_client.replay import may_resend
from tunnelsite_client.target import RequestLog
from tunnelsite_client.tunnel import is_fatal


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LT_CONFIG_DIR", str(tmp_path / "cfg"))
    return tmp_path / "cfg"


def test_the_saved_login_is_private_and_round_trips(config_dir):
    path = save_login(Login("https://relay.example", "lt_abc"))
    assert path == config_dir / "login.json" == login_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_login() == Login("https://relay.example", "lt_abc")
    save_login(Login("https://other.example", "lt_def"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_login() == Login("https://other.example", "lt_def")
    assert delete_login() is True
    assert load_login() is None
    assert delete_login() is False


def test_an_unreadable_login_counts_as_none(config_dir):
    config_dir.mkdir()
    (config_dir / "login.json").write_text("{not json")
    assert load_login() is None


def test_flags_are_parsed_like_the_npm_client():
    settings = parse_settings(
        [
            "-p",
            "3000",
            "-h",
            "https://relay.example/",
            "-s",
            "my-app",
            "-l",
            "app.test",
            "--local-https",
            "--allow-invalid-cert",
            "--print-requests",
            "-o",
        ],
        {},
    )
    opts = settings.options
    assert (opts.port, opts.host, opts.subdomain, opts.local_host) == (
        3000,
        "https://relay.example",
        "my-app",
        "app.test",
    )
    assert opts.local_https and opts.allow_invalid_cert
    assert settings.print_requests and settings.open
    assert opts.token is None


def test_environment_variables_fill_in_flags_and_flags_win():
    env = {
        "PORT": "4000",
        "HOST": "https://env.example",
        "SUBDOMAIN": "fromenv",
        "LOCAL_HTTPS": "true",
        "PRINT_REQUESTS": "false",
        "LT_TOKEN": "lt_env",
    }
    settings = parse_settings([], env)
    assert settings.options.port == 4000
    assert settings.options.host == "https://env.example"
    assert settings.options.subdomain == "fromenv"
    assert settings.options.local_https is True
    assert settings.print_requests is False
    assert settings.options.token == "lt_env"
    flags = parse_settings(
        ["--port", "5000", "--token", "lt_flag", "--host", "https://f.example"], env
    )
    assert (flags.options.port, flags.options.token) == (5000, "lt_flag")
    assert flags.options.host == "https://f.example"


def test_the_default_host_is_the_local_relay():
    assert (
        parse_settings(["--port", "1"], {}).options.host == DEFAULT_HOST == "http://localhost:8080"
    )


def test_a_saved_login_gives_host_and_token_but_the_token_only_to_its_host():
    save_login(Login("https://relay.example", "lt_saved"))
    saved = parse_settings(["--port", "1"], {})
    assert (saved.options.host, saved.options.token) == ("https://relay.example", "lt_saved")
    other = parse_settings(["--port", "1", "--host", "https://elsewhere.example"], {})
    assert other.options.token is None


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {}),
        (["--port", "abc"], {}),
        (["--port", "70000"], {}),
        ([], {"PORT": "x"}),
        (["--port", "1", "--host", "relay.example"], {}),
        (["--port", "1", "--subdomain", "a_b"], {}),
        (["--port", "1"], {"LOCAL_HTTPS": "maybe"}),
        (["--port", "1", "--local-ca", "/no/such/file.pem"], {}),
        (["--port", "1", "--no-such-flag"], {}),
    ],
)
def test_bad_settings_are_usage_errors(argv, env):
    with pytest.raises(UsageError):
        parse_settings(argv, env)


def test_main_exits_2_on_usage_errors_naming_where_the_bad_value_came_from(capsys, monkeypatch):
    assert main(["--port", "nope"]) == EXIT_USAGE
    assert "--port must be a number" in capsys.readouterr().err
    monkeypatch.setenv("HOST", "myhost")
    assert main(["--port", "80"]) == EXIT_USAGE
    assert "HOST (environment): the relay must be an http" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "code"), [(401, 3), (403, 4), (409, 5), (429, 6), (400, 1), (404, 1), (203, 1)]
)
def test_each_refusal_has_its_exit_code(status, code):
    assert exit_code_for(status) == code


def test_which_answers_end_the_client_and_which_are_retried():
    assert all(is_fatal(s, False) for s in (400, 401, 403, 404, 409, 429, 203))
    assert not any(is_fatal(s, False) for s in (0, 408, 500, 502, 503))
    assert is_fatal(409, True) and is_fatal(401, True)
    assert not is_fatal(429, True)  # a restarting relay may rate-limit re-registrations


def test_the_first_retry_is_fast():
    assert all(FIRST_DELAY_S <= delay_for(0) <= 1.0 for _ in range(100))


@given(st.integers(min_value=0, max_value=10_000))
def test_retry_delays_grow_and_are_capped(attempt):
    delay = delay_for(attempt)
    assert 0 < delay <= MAX_DELAY_S
    assert delay >= min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** min(attempt, 32))


def test_the_subdomain_rule_is_the_relays():
    assert is_valid_subdomain("abcd") and is_valid_subdomain("my-app-1")
    assert not is_valid_subdomain("abc")
    assert not is_valid_subdomain("-abcde") and not is_valid_subdomain("Abcd")
    assert not is_valid_subdomain("a" * 66)


def test_registration_answers_connect_the_pool_to_ip_when_given():
    body = b'{"id": "quiet-fox", "port": 4100, "max_conn_count": 10, "url": "http://q.x"}'
    reg = parse_registration("http://relay.example:8080", body)
    assert (reg.id, reg.port, reg.max_conn_count, reg.pool_host) == (
        "quiet-fox",
        4100,
        10,
        "relay.example",
    )
    body = b'{"id": "quiet-fox", "port": 4100, "url": "http://q.x", "ip": "10.0.0.9"}'
    reg = parse_registration("http://relay.example:8080", body)
    assert (reg.pool_host, reg.max_conn_count) == ("10.0.0.9", 1)


def test_the_token_goes_as_a_bearer_header_and_url_userinfo_as_basic():
    assert auth_headers("http://r.example", "lt_x")["Authorization"] == "Bearer lt_x"
    assert auth_headers("http://r.example", None).get("Authorization") is None
    assert auth_headers("http://r.example", None)["User-Agent"].startswith("tunnelsite-lt/")
    bare, basic = split_userinfo("https://lt_tok@relay.example:8443/")
    assert bare == "https://relay.example:8443/"
    assert basic == "Basic bHRfdG9rOg=="  # base64("lt_tok:")
    assert auth_headers("https://lt_tok@relay.example", None)["Authorization"] == basic


def test_without_ip_the_pool_connects_where_the_registration_was_answered():
    body = b'{"id": "quiet-fox", "port": 4100, "url": "http://q.x"}'
    reg = parse_registration("http://localhost:8080", body, peer_ip="::1")
    assert reg.pool_host == "::1"


def test_the_relay_cannot_make_the_client_open_unbounded_sockets():
    body = b'{"id": "quiet-fox", "port": 4100, "max_conn_count": 100000, "url": "http://q.x"}'
    assert parse_registration("http://r.example", body).max_conn_count == MAX_POOL_SOCKETS


def test_request_lines_show_time_method_path_status_and_duration():
    line = request_line(RequestLog("POST", "/api?x=1", 201, 0.0123))
    assert re.fullmatch(r"\d\d:\d\d:\d\d POST /api\?x=1 201 12 ms", line)
    assert human_bytes(512) == "512 B" and human_bytes(3 * 1024 * 1024) == "3.0 MiB"


def test_a_refusal_meant_for_the_npm_client_still_maps_to_its_real_status():
    npm_style = Answer(203, {"X-Tunnelsite-Status": "409"}, b'{"message": "taken"}')
    assert _real_status(npm_style) == 409
    body_only = Answer(203, {}, b'{"message": "taken", "status": 401}')
    assert _real_status(body_only) == 401
    assert _real_status(Answer(203, {}, b'{"message": "odd"}')) == 203
    assert _real_status(Answer(503, {"X-Tunnelsite-Status": "409"}, b"")) == 503
    assert _retry_after({"Retry-After": "7"}) == 7.0
    assert _retry_after({"retry-after": "soon"}) is None


@pytest.mark.parametrize("status", [b"Infinity", b"NaN", b"[409]", b"null", b'"x"'])
def test_a_refusal_with_a_status_that_is_no_number_keeps_the_answers_status(status):
    assert _real_status(Answer(203, {}, b'{"status": ' + status + b"}")) == 203


def test_the_client_imports_nothing_from_the_server():
    code = (
        "import sys, tunnelsite_client, tunnelsite_client.cli, tunnelsite_client.display;"
        "server = {'django', 'channels', 'daphne', 'twisted', 'relay', 'tunnels', 'tunnelsite'};"
        "print(sorted({m.split('.')[0] for m in sys.modules} & server))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        (b"GET", [], True),
        (b"PUT", [], True),
        (b"DELETE", [], True),
        (b"POST", [], False),
        (b"PATCH", [], False),
        (b"POST", [(b"Idempotency-Key", b"abc")], True),
    ],
)
def test_only_requests_that_are_safe_to_repeat_are_sent_again(
    method: bytes, headers: list[tuple[bytes, bytes]], expected: bool
) -> None:
    request = h11.Request(method=method, target="/", headers=[(b"host", b"x"), *headers])
    assert may_resend(request) is expected


@pytest.mark.parametrize("host", ["http://[::1:1", "https://[fe80::1", "http://user@[::1"])
def test_a_malformed_ipv6_relay_url_is_a_one_line_usage_error(capsys, host):
    assert main(["--port", "9", "--host", host]) == EXIT_USAGE
    assert main(["login", "--host", host, "--token", "lt_x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 2 and "--host" in err.splitlines()[0], err
