"""`lt`'s flags and their environment variables, read into `Settings` (npm-compatible).

Like the npm client (yargs `.env(true)`), every flag can also come from an environment
variable named after it: PORT, HOST, SUBDOMAIN, LOCAL_HOST, LOCAL_HTTPS, ... A flag on
the command line wins over the variable. The token comes from --token, LT_TOKEN, or the
saved login (only sent to the host it was saved for), and never over plain http to a host
that is not loopback unless --insecure says so. The proxy variables (HTTPS_PROXY,
HTTP_PROXY, NO_PROXY) are read by connect.py; a bad one is a usage error here.

Who may visit (access.py): --basic-auth USER:PASS (repeatable; USER alone asks for the
password on a terminal, so it is not in `ps`; or LT_BASIC_AUTH, one USER:PASS a line),
--cidr-allow / --cidr-deny CIDR (repeatable; CIDR_ALLOW, CIDR_DENY: comma-separated),
--private (PRIVATE=true). Passwords go over plain http only to loopback, as the token.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import __version__
from .access import split_list, visitor_rules
from .config import load_login
from .connect import RelayConnector, plain_http_token_refusal
from .limits import SHOWN_VALUE_CHARS, SUBDOMAIN_RULE
from .options import DEFAULT_HOST, TunnelOptions
from .redact import redact_url
from .registration import is_valid_subdomain

TOKEN_ENV = "LT_TOKEN"
# Visitors' USER:PASS, one a line (a secret, so LT_ like the token; used when no
# --basic-auth is given).
BASIC_AUTH_ENV = "LT_BASIC_AUTH"
# Repeatable flags and their (comma-separated) variables.
LIST_FLAGS = {"cidr_allow": "CIDR_ALLOW", "cidr_deny": "CIDR_DENY"}

# Flags that take a value, and the environment variable each one also reads.
VALUE_FLAGS = {
    "port": "PORT",
    "host": "HOST",
    "subdomain": "SUBDOMAIN",
    "local_host": "LOCAL_HOST",
    "local_cert": "LOCAL_CERT",
    "local_key": "LOCAL_KEY",
    "local_ca": "LOCAL_CA",
    "ca": "CA",
}
BOOL_FLAGS = {
    "local_https": "LOCAL_HTTPS",
    "allow_invalid_cert": "ALLOW_INVALID_CERT",
    "print_requests": "PRINT_REQUESTS",
    "open": "OPEN",
    "takeover": "TAKEOVER",
    "insecure": "INSECURE",
    "raw_pool": "RAW_POOL",
    "private": "PRIVATE",
}
# --no-local-keepalive is the negative of LOCAL_KEEPALIVE (true by default).
KEEPALIVE_ENV = "LOCAL_KEEPALIVE"


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing its error itself, so the CLI
    masks secrets in it (`--basic-autth alice:pw` would be echoed as unrecognised)."""

    def error(self, message: str) -> typing.NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(f"error: {message}")


@dataclass
class Settings:
    options: TunnelOptions
    print_requests: bool = False
    open: bool = False


def build_parser() -> argparse.ArgumentParser:
    # -h is --host in the npm client, so help is only --help.
    parser = Parser(
        prog="lt",
        usage="lt --port N [options]   |   lt tcp --port N [options]   |   "
        "lt login --host URL [--token T]   |   lt logout",
        description="Expose a local port through a localtunnel-compatible relay.",
        epilog="Every flag can also be set by an environment variable named after it "
        "(PORT, HOST, LOCAL_HTTPS=true, ...); the token also by LT_TOKEN. HTTPS_PROXY and "
        "HTTP_PROXY (with NO_PROXY) send lt through a forward proxy (CONNECT). Exit codes: 0 "
        "stopped, 1 failure, 2 usage, 3 unauthorized (401), 4 forbidden (403), 5 name taken "
        "(409), 6 rate limited (429), 7 taken over by another client (--takeover), 8 "
        "disconnected by the relay's operator, 9 suspended by the relay's operator. `lt login "
        "--host URL` without a token signs in in the browser (see `lt login --help`). `lt tcp "
        "--port 5432` exposes a TCP port (a database, SSH): see `lt tcp --help`.",
        add_help=False,
    )
    add = parser.add_argument
    add("--help", action="help", help="show this help and exit")
    add("--version", action="version", version=f"lt (tunnelsite) {__version__}")
    add("-p", "--port", help="local port to expose (required)")
    add("-h", "--host", help=f"relay URL (default: saved login, else {DEFAULT_HOST})")
    add("-s", "--subdomain", help="ask for this name")
    add("-l", "--local-host", help="send requests to this host and rewrite Host to it")
    add("--local-https", action="store_true", default=None, help="the local app speaks HTTPS")
    add("--local-cert", help="client certificate for the local HTTPS app")
    add("--local-key", help="key of the client certificate")
    add("--local-ca", help="CA file to verify the local HTTPS app")
    add(
        "--allow-invalid-cert",
        action="store_true",
        default=None,
        help="do not verify the local app's certificate",
    )
    add("--print-requests", action="store_true", default=None, help="one line per request")
    add("-o", "--open", action="store_true", default=None, help="open the URL in a browser")
    add("-t", "--token", help=f"access token (or {TOKEN_ENV}, or a saved login)")
    add(
        "--ca",
        metavar="FILE",
        help="verify the relay's certificate against this CA file (default: the system's store)",
    )
    add(
        "--insecure",
        action="store_true",
        default=None,
        help="do not verify the relay's certificate, and allow a token over plain http "
        "(anyone on the path can then read and change the tunnel's traffic)",
    )
    add(
        "--raw-pool",
        action="store_true",
        default=None,
        help="open raw pool sockets to the relay's pool port, like the npm client: unencrypted "
        "and bound to your address; for comparison, and for relays that only offer raw pools "
        "(default: pool connections over the relay's own port, encrypted when it is https)",
    )
    add(
        "--takeover",
        action="store_true",
        default=None,
        help="take --subdomain from another running client of yours (it is disconnected)",
    )
    add(
        "--basic-auth",
        action="append",
        metavar="USER:PASS",
        help="visitors must log in with this user and password (repeatable; USER alone asks "
        f"for the password, kept out of `ps`; or {BASIC_AUTH_ENV}, one USER:PASS a line)",
    )
    add(
        "--cidr-allow",
        action="append",
        metavar="CIDR",
        help="only visitors from this network (repeatable; IPv4 or IPv6, e.g. 10.0.0.0/8)",
    )
    add(
        "--cidr-deny",
        action="append",
        metavar="CIDR",
        help="no visitors from this network (repeatable; wins over --cidr-allow)",
    )
    add(
        "--private",
        action="store_true",
        default=None,
        help="team only: visitors sign in to the relay as you, staff, or a user sharing a "
        "group with you",
    )
    add(
        "--no-local-keepalive",
        dest="local_keepalive",
        action="store_false",
        default=None,
        help="open a new connection to the local app for every request (strict isolation "
        f"between visitors; or {KEEPALIVE_ENV}=false)",
    )
    return parser


def env_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={value!r} is not a boolean (use true or false)")


def check_host(host: str) -> str:
    try:
        parts = urlsplit(host)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL": an unclosed '['
        raise UsageError(f"the relay URL is malformed ({exc}): {redact_url(host)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = redact_url(host)
        raise UsageError(f"the relay must be an http:// or https:// URL, not {shown!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise UsageError(f"the relay URL has a bad port: {redact_url(host)!r}") from exc
    return host.rstrip("/")


def check_ca(path: str | None, origin: str) -> None:
    """A --ca file must exist and hold at least one certificate."""
    if not path:
        return
    if not os.path.isfile(path):
        raise UsageError(f"{origin}: no such file {path!r}")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        raise UsageError(f"{origin}: {path!r} is not a PEM CA file ({exc})") from None


def basic_auth_values(
    given: list[str] | None,
    environ: Mapping[str, str],
    ask: Callable[[str], str] | None,
) -> list[str]:
    """--basic-auth's values, else LT_BASIC_AUTH's lines; a USER without a password is
    completed by `ask` (getpass on a terminal), a usage error without one."""
    if not given:
        # "\n" alone separates: any other control character in a line is refused, not split.
        text = environ.get(BASIC_AUTH_ENV, "")
        lines = [line.removesuffix("\r") for line in text.split("\n") if line.strip()]
        if any(":" not in line for line in lines):
            raise UsageError(f"{BASIC_AUTH_ENV}: each line is USER:PASS")
        return lines
    values = []
    for value in given:
        if ":" not in value and value:
            if ask is None:
                raise UsageError(
                    f"--basic-auth {value[:SHOWN_VALUE_CHARS]!r} has no password and there is "
                    f"no terminal to ask for it: give USER:PASS, or put USER:PASS in "
                    f"{BASIC_AUTH_ENV}"
                )
            password = ask(f"password for visitors' user {value[:SHOWN_VALUE_CHARS]!r}: ")
            if not password:
                raise UsageError(
                    f"--basic-auth for {value[:SHOWN_VALUE_CHARS]!r}: the password is empty"
                )
            value = f"{value}:{password}"
        values.append(value)
    return values


def read_flags(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    environ: Mapping[str, str],
    value_flags: Mapping[str, str],
    bool_flags: Mapping[str, str],
) -> tuple[dict[str, typing.Any], dict[str, str]]:
    """`argv` parsed by `parser`, then what the environment sets of what the flags left
    unset (LIST_FLAGS, and the parser's `value_flags` and `bool_flags`: dest -> variable):
    the values, and where each value flag's came from (for messages)."""
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        raise UsageError("") from None
    values = vars(args)
    for dest, env in LIST_FLAGS.items():
        if not values[dest] and environ.get(env):
            values[dest] = split_list(environ[env])
    origin = {dest: f"--{dest.replace('_', '-')}" for dest in value_flags}
    for dest, env in value_flags.items():
        if values[dest] is None and environ.get(env):
            values[dest] = environ[env]
            origin[dest] = f"{env} (environment)"
    for dest, env in bool_flags.items():
        if values[dest] is None:
            values[dest] = env_bool(env, environ[env]) if env in environ else False
    return values, origin


def relay_and_token(
    values: dict[str, typing.Any], origin: dict[str, str], environ: Mapping[str, str]
) -> tuple[str, str | None]:
    """The relay URL (the flag, else the saved login's, else the default) and the token
    (the flag, LT_TOKEN, else the saved login's when it is for this relay)."""
    login = load_login()
    try:
        host = check_host(values["host"] or (login.host if login else DEFAULT_HOST))
    except UsageError as exc:
        if values["host"] is None:
            raise UsageError(f"the saved login's host is bad ({exc}); run lt login") from None
        raise UsageError(f"{origin['host']}: {exc}") from None
    token = values["token"] or environ.get(TOKEN_ENV) or None
    if token is None and login is not None and login.host.rstrip("/") == host:
        token = login.token
    return host, token


def relay_connector(
    values: dict[str, typing.Any],
    origin: dict[str, str],
    environ: Mapping[str, str],
    host: str,
    token: str | None,
) -> RelayConnector:
    """How lt reaches the relay (--ca, a forward proxy), once the token may go there."""
    check_ca(values["ca"], origin["ca"])
    try:
        connector = RelayConnector.from_environment(environ)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    refusal = plain_http_token_refusal(host, token, values["insecure"], connector)
    if refusal:
        raise UsageError(refusal)
    return connector


def parse_settings(
    argv: Sequence[str],
    environ: Mapping[str, str],
    ask: Callable[[str], str] | None = None,
) -> Settings:
    """Flags, then environment variables, then the saved login, then defaults. `ask` asks
    the user for a password (--basic-auth USER); None: no terminal to ask on."""
    values, origin = read_flags(build_parser(), argv, environ, VALUE_FLAGS, BOOL_FLAGS)
    if values["local_keepalive"] is None:
        env_value = environ.get(KEEPALIVE_ENV, "true")
        values["local_keepalive"] = env_bool(KEEPALIVE_ENV, env_value or "true")
    if values["port"] is None:
        raise UsageError("--port is required (the local port to expose)")
    try:
        port = int(values["port"])
    except ValueError:
        raise UsageError(f"{origin['port']} must be a number, not {values['port']!r}") from None
    if not 0 < port < 65536:
        raise UsageError(f"{origin['port']} must be 1-65535, not {port}")
    host, token = relay_and_token(values, origin, environ)
    subdomain = values["subdomain"]
    if subdomain is not None:
        subdomain = subdomain.lower()
        if not is_valid_subdomain(subdomain):
            raise UsageError(f"invalid subdomain {subdomain!r}: {SUBDOMAIN_RULE}")
    if values["takeover"] and subdomain is None:
        raise UsageError("--takeover needs --subdomain (the name to take over)")
    for dest in ("local_cert", "local_key", "local_ca"):
        path = values[dest]
        if path and not os.path.isfile(path):
            raise UsageError(f"--{dest.replace('_', '-')}: no such file {path!r}")
    if values["local_cert"] and not values["local_key"]:
        raise UsageError("--local-cert needs --local-key")
    connector = relay_connector(values, origin, environ, host, token)
    try:
        rules = visitor_rules(
            basic_auth_values(values["basic_auth"], environ, ask),
            values["cidr_allow"] or (),
            values["cidr_deny"] or (),
            values["private"],
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if rules.passwords:
        refusal = plain_http_token_refusal(
            host,
            "(passwords)",
            values["insecure"],
            connector,
            what="visitor passwords (--basic-auth)",
        )
        if refusal:
            raise UsageError(refusal)
    options = TunnelOptions(
        port=port,
        host=host,
        subdomain=subdomain,
        token=token,
        local_host=values["local_host"],
        local_https=values["local_https"],
        local_cert=values["local_cert"],
        local_key=values["local_key"],
        local_ca=values["local_ca"],
        allow_invalid_cert=values["allow_invalid_cert"],
        takeover=values["takeover"],
        local_keepalive=values["local_keepalive"],
        ca=values["ca"],
        insecure=values["insecure"],
        raw_pool=values["raw_pool"],
        basic_auth=rules.basic_auth,
        cidr_allow=rules.cidr_allow,
        cidr_deny=rules.cidr_deny,
        private=rules.private,
    )
    return Settings(options, print_requests=values["print_requests"], open=values["open"])
