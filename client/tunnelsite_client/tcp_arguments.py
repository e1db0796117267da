"""`lt tcp`'s flags and their environment variables, read into `Settings`.

    lt tcp --port 5432 [--host URL] [--token T] [--remote-port N] [--local-host H]
           [--raw-pool] [--ca FILE] [--insecure] [--cidr-allow CIDR]... [--cidr-deny CIDR]...
           [--print-requests]

The token, the host, the saved login, the proxy variables and the CIDR rules are read as for
an HTTP tunnel (arguments.py). HTTP's own flags are a usage error with the reason.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from .access import visitor_rules
from .arguments import (
    TOKEN_ENV,
    Parser,
    Settings,
    UsageError,
    read_flags,
    relay_and_token,
    relay_connector,
)
from .limits import HIGHEST_PORT
from .options import DEFAULT_HOST, TunnelOptions

VALUE_FLAGS = {"port": "PORT", "host": "HOST", "local_host": "LOCAL_HOST", "ca": "CA"}
BOOL_FLAGS = {
    "print_requests": "PRINT_REQUESTS",
    "insecure": "INSECURE",
    "raw_pool": "RAW_POOL",
}
REMOTE_PORT_ENV = "REMOTE_PORT"
_NOT_A_NAME = "a TCP tunnel is a port, not a name (--remote-port asks for one you reserved)"
_AS_IS = "lt passes a TCP tunnel's bytes as they are (TLS included)"
_CIDR = "a TCP tunnel takes --cidr-allow/--cidr-deny"
# HTTP tunnels' flags, and why a TCP tunnel has none of them.
HTTP_ONLY_FLAGS = {
    "--basic-auth": _CIDR,
    "--private": _CIDR,
    "--subdomain": _NOT_A_NAME,
    "-s": _NOT_A_NAME,
    "--takeover": _NOT_A_NAME,
    "--local-https": _AS_IS,
    "--local-cert": _AS_IS,
    "--local-key": _AS_IS,
    "--local-ca": _AS_IS,
    "--allow-invalid-cert": _AS_IS,
    "--no-local-keepalive": "a TCP tunnel opens one connection to the app per visitor connection",
    "--open": "a browser cannot open a tcp:// URL",
    "-o": "a browser cannot open a tcp:// URL",
}


def build_tcp_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lt tcp",
        usage="lt tcp --port N [options]",
        description="Expose a local TCP port (a database, SSH, anything that is not HTTP) on "
        "a public TCP port of the relay: lt prints tcp://HOST:PORT, and each connection to "
        "it reaches --local-host:--port.",
        epilog="Every flag can also be set by an environment variable named after it (PORT, "
        "HOST, REMOTE_PORT, RAW_POOL=true, ...); the token also by LT_TOKEN or a saved login "
        "(lt login). Exit codes as for `lt`: 0 stopped, 1 failure, 2 usage, 3 unauthorized, "
        "4 forbidden (TCP tunnels off, or not in your plan), 5 the port is taken, 6 rate "
        "limited or too many tunnels, 8 disconnected, 9 suspended by the relay's operator.",
        add_help=False,
    )
    add = parser.add_argument
    add("--help", action="help", help="show this help and exit")
    add("-p", "--port", help="local port to expose (required)")
    add("-h", "--host", help=f"relay URL (default: saved login, else {DEFAULT_HOST})")
    add("-t", "--token", help=f"access token (or {TOKEN_ENV}, or a saved login)")
    add(
        "--remote-port",
        metavar="N",
        help="ask for this public port (one reserved for you by the relay's admin)",
    )
    add("-l", "--local-host", help="the app's address (default: localhost)")
    add(
        "--raw-pool",
        action="store_true",
        default=None,
        help="raw pool sockets to the relay's pool port, like the npm client (unencrypted)",
    )
    add("--ca", metavar="FILE", help="verify the relay's certificate against this CA file")
    add(
        "--insecure",
        action="store_true",
        default=None,
        help="do not verify the relay's certificate, and allow a token over plain http",
    )
    add(
        "--cidr-allow",
        action="append",
        metavar="CIDR",
        help="only visitors from this network (repeatable)",
    )
    add(
        "--cidr-deny",
        action="append",
        metavar="CIDR",
        help="no visitors from this network (repeatable; wins over --cidr-allow)",
    )
    add(
        "--print-requests",
        action="store_true",
        default=None,
        help="one line per visitor connection that ended (address, bytes, duration)",
    )
    return parser


def _http_only(argv: Sequence[str]) -> None:
    for arg in argv:
        if arg == "--":
            return
        flag = arg.partition("=")[0]
        if flag in HTTP_ONLY_FLAGS:
            raise UsageError(f"{flag} is for HTTP tunnels; {HTTP_ONLY_FLAGS[flag]}")


def _port(value: str, origin: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise UsageError(f"{origin} must be a number, not {value!r}") from None
    if not 0 < port <= HIGHEST_PORT:
        raise UsageError(f"{origin} must be 1-65535, not {port}")
    return port


def parse_tcp_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """`lt tcp`'s flags (argv after "tcp"), then the environment, the saved login, defaults."""
    _http_only(argv)
    values, origin = read_flags(
        build_tcp_parser(),
        argv,
        environ,
        {**VALUE_FLAGS, "remote_port": REMOTE_PORT_ENV},
        BOOL_FLAGS,
    )
    if values["port"] is None:
        raise UsageError("--port is required (the local port to expose)")
    port = _port(values["port"], origin["port"])
    remote_port = None
    if values["remote_port"] is not None:
        remote_port = _port(values["remote_port"], origin["remote_port"])
    host, token = relay_and_token(values, origin, environ)
    relay_connector(values, origin, environ, host, token)
    try:
        rules = visitor_rules((), values["cidr_allow"] or (), values["cidr_deny"] or (), False)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = TunnelOptions(
        port=port,
        host=host,
        token=token,
        local_host=values["local_host"],
        ca=values["ca"],
        insecure=values["insecure"],
        raw_pool=values["raw_pool"],
        cidr_allow=rules.cidr_allow,
        cidr_deny=rules.cidr_deny,
        tcp=True,
        remote_port=remote_port,
    )
    return Settings(options, print_requests=values["print_requests"])
