"""`lt tcp`'s flags (client/tunnelsite_client/tcp_arguments.py), the TCP answer of a registration
(tunnelsite_client/registration.py) and the library's check of TCP options
(tunnelsite_client/options.py)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tunnelsite_client.arguments import UsageError, build_parser
from tunnelsite_client.options import TunnelOptions, tcp_refusal
from tunnelsite_client.registration import RegistrationError, parse_registration
from tunnelsite_client.tcp_arguments import parse_tcp_settings


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LT_CONFIG_DIR", str(tmp_path / "cfg"))


def test_lt_tcp_reads_its_flags_into_a_tcp_tunnels_options() -> None:
    settings = parse_tcp_settings(
        [
            "--port", "5432", "--host", "https://relay.example", "--remote-port", "40001",
            "--local-host", "db.internal", "--raw-pool", "--cidr-allow", "10.0.0.0/8",
            "--cidr-deny", "10.1.0.0/16", "--print-requests", "--token", "lt_secret",
        ],
        {},
    )  # fmt: skip
    options = settings.options
    assert (options.tcp, options.port, options.remote_port) == (True, 5432, 40001)
    assert (options.host, options.local_host, options.token) == (
        "https://relay.example",
        "db.internal",
        "lt_secret",
    )
    assert options.raw_pool and settings.print_requests
    assert list(options.cidr_allow) == ["10.0.0.0/8"]
    assert list(options.cidr_deny) == ["10.1.0.0/16"]
    assert tcp_refusal(options) is None


def test_lt_tcp_defaults_to_localhost_any_port_and_the_upgraded_pool() -> None:
    options = parse_tcp_settings(["--port", "6379"], {"LT_TOKEN": "lt_x"}).options
    assert options.remote_port is None and options.local_host is None
    assert not options.raw_pool and options.token == "lt_x"
    assert options.host == "http://localhost:8080"


@pytest.mark.parametrize(
    ("flag", "why"),
    [
        (["--basic-auth", "a:b"], "a TCP tunnel takes --cidr-allow/--cidr-deny"),
        (["--private"], "a TCP tunnel takes --cidr-allow/--cidr-deny"),
        (["--local-https"], "as they are"),
        (["--local-cert=c.pem"], "as they are"),
        (["--subdomain", "mydb"], "a port, not a name"),
        (["-o"], "cannot open a tcp:// URL"),
    ],
)
def test_http_only_flags_are_a_usage_error_that_says_why(flag: list[str], why: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_tcp_settings(["--port", "5432", *flag], {})
    message = str(refused.value)
    assert message.startswith(f"{flag[0].partition('=')[0]} is for HTTP tunnels; ")
    assert why in message
    assert "a:b" not in message


@pytest.mark.parametrize("value", ["0", "65536", "-1", "many"])
def test_a_remote_port_out_of_range_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="--remote-port must be"):
        parse_tcp_settings(["--port", "5432", "--remote-port", value], {})


def test_the_port_is_required_and_a_bad_cidr_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--port is required"):
        parse_tcp_settings([], {})
    with pytest.raises(UsageError, match="10.0.0.300"):
        parse_tcp_settings(["--port", "1", "--cidr-allow", "10.0.0.300/8"], {})


def test_the_environment_sets_what_the_flags_do_not() -> None:
    options = parse_tcp_settings([], {"PORT": "22", "REMOTE_PORT": "40022"}).options
    assert (options.port, options.remote_port) == (22, 40022)
    with pytest.raises(UsageError, match=r"REMOTE_PORT \(environment\) must be 1-65535"):
        parse_tcp_settings(["--port", "22"], {"REMOTE_PORT": "0"})


def test_lt_help_names_lt_tcp() -> None:
    assert "lt tcp --port N" in build_parser().format_help()


def answer(**fields: object) -> bytes:
    base: dict[str, object] = {"id": "a1b2c3d4", "port": 40000, "max_conn_count": 10}
    return json.dumps({**base, **fields}).encode()


def test_a_tcp_answer_gives_the_public_port_and_the_tcp_url() -> None:
    body = answer(url="tcp://relay.example:41000", tcp_port=41000)
    reg = parse_registration("https://relay.example", body, tcp=True)
    assert (reg.tcp_port, reg.url) == (41000, "tcp://relay.example:41000")


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "https://a1b2c3d4.relay.example"},  # a relay that knows only HTTP tunnels
        {"url": "https://a1b2c3d4.relay.example", "tcp_port": 41000},
        {"url": "tcp://relay.example:0", "tcp_port": 0},
        {"url": "tcp://relay.example:41000", "tcp_port": "41000"},
        {"url": "tcp://relay.example:41000", "tcp_port": True},
    ],
)
def test_an_answer_that_is_not_a_tcp_tunnels_is_refused_for_good(fields: dict[str, object]) -> None:
    with pytest.raises(RegistrationError, match="does not offer TCP tunnels") as refused:
        parse_registration("https://relay.example", answer(**fields), tcp=True)
    assert refused.value.lasting


def test_the_library_refuses_http_options_on_a_tcp_tunnel() -> None:
    assert tcp_refusal(TunnelOptions(port=1, tcp=True, subdomain="mydb")) is not None
    assert tcp_refusal(TunnelOptions(port=1, tcp=True, basic_auth=("a:b",))) is not None
    assert "1-65535" in str(tcp_refusal(TunnelOptions(port=1, tcp=True, remote_port=70000)))
    assert "tcp=True" in str(tcp_refusal(TunnelOptions(port=1, remote_port=40000)))


def test_lt_tcps_flags_use_only_the_public_names_of_lts_flag_parsing() -> None:
    """tcp_arguments.py shares arguments.py's parser and helpers through their public
    names: a private name imported from another module is a seam nobody promised to keep."""
    source = Path(__file__).parents[2] / "client" / "tunnelsite_client" / "tcp_arguments.py"
    tree = ast.parse(source.read_text())
    private = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and alias.name != "__future__"
    ]
    assert private == []
