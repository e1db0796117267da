"""What a tunnel is asked for (`TunnelOptions`, the CLI flags and the library's keywords)
and the local target built from it (`local_target`: the TLS settings of --local-https)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from .connect import RelayConnector
from .keepalive import KeepAlive
from .limits import HIGHEST_PORT
from .target import LocalTarget

DEFAULT_HOST = "http://localhost:8080"


@dataclass
class TunnelOptions:
    port: int
    host: str = field(default=DEFAULT_HOST, repr=False)  # may hold a token (user-info)
    subdomain: str | None = None
    token: str | None = field(default=None, repr=False)
    local_host: str | None = None
    local_https: bool = False
    local_cert: str | None = None
    local_key: str | None = None
    local_ca: str | None = None
    allow_invalid_cert: bool = False
    takeover: bool = False  # take the name from a live client of the same owner (--takeover)
    # Keep connections to the local app between requests (False: --no-local-keepalive,
    # one connection per request: strict isolation between visitors, a little slower).
    local_keepalive: bool = True
    # The relay's certificate: verified against this CA file (--ca; else the system's store),
    # or not at all (--insecure).
    ca: str | None = None
    insecure: bool = False
    # Raw pool sockets to the relay's pool port, like the npm client (--raw-pool): unencrypted
    # and bound to this machine's address; for comparison, and for relays that only offer raw
    # pools. Default: the upgraded pool over the relay's own port (TLS when it is https).
    raw_pool: bool = False
    # Who may visit (access.py; lt --basic-auth, --cidr-allow, --cidr-deny, --private): sent
    # with every registration; the relay may add its operator's rules, never drop these.
    basic_auth: Sequence[str] = field(default=(), repr=False)  # "user:pass" each
    cidr_allow: Sequence[str] = ()
    cidr_deny: Sequence[str] = ()
    private: bool = False
    # A TCP tunnel (`lt tcp`): raw bytes of each visitor connection to `local_host:port`, on
    # a public port of the relay's (`remote_port`: one the user reserved; None: any).
    tcp: bool = False
    remote_port: int | None = None


def local_target(options: TunnelOptions) -> LocalTarget:
    """Where the pool sockets' requests go, with the TLS settings of --local-https."""
    context: ssl.SSLContext | None = None
    if options.local_https:
        context = ssl.create_default_context(cafile=options.local_ca)
        if options.local_cert:
            context.load_cert_chain(options.local_cert, options.local_key)
        if options.allow_invalid_cert:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return LocalTarget(
        host=options.local_host or "localhost",
        port=options.port,
        host_header=options.local_host,
        ssl_context=context,
        keepalive=KeepAlive(options.local_keepalive),
    )


# What a TCP tunnel cannot take: HTTP's options, each with the sentence saying why.
HTTP_ONLY = {
    "subdomain": "a TCP tunnel is a port, not a name",
    "basic_auth": "a TCP tunnel takes --cidr-allow/--cidr-deny",
    "private": "a TCP tunnel takes --cidr-allow/--cidr-deny",
    "local_https": "lt passes a TCP tunnel's bytes as they are (TLS included)",
    "local_cert": "lt passes a TCP tunnel's bytes as they are (TLS included)",
    "local_key": "lt passes a TCP tunnel's bytes as they are (TLS included)",
    "local_ca": "lt passes a TCP tunnel's bytes as they are (TLS included)",
    "allow_invalid_cert": "lt passes a TCP tunnel's bytes as they are (TLS included)",
    "takeover": "a TCP tunnel is a port, not a name",
}


def tcp_refusal(options: TunnelOptions) -> str | None:
    """Why `options` cannot make a TCP tunnel (an HTTP-only option is set), or None."""
    if not options.tcp:
        if options.remote_port is not None:
            return "remote_port is for TCP tunnels (tcp=True)"
        return None
    for name, why in HTTP_ONLY.items():
        if getattr(options, name):
            return f"{name} is for HTTP tunnels; {why}"
    if options.remote_port is not None and not 0 < options.remote_port <= HIGHEST_PORT:
        return f"remote_port must be 1-65535, not {options.remote_port}"
    return None


def local_label(options: TunnelOptions) -> str:
    """Where a TCP tunnel's visitor connections go: host:port."""
    return f"{options.local_host or 'localhost'}:{options.port}"


def relay_connector(options: TunnelOptions) -> RelayConnector:
    """How the tunnel reaches the relay: its TLS (--ca, --insecure) and a forward proxy
    (HTTPS_PROXY, HTTP_PROXY, NO_PROXY in this process's environment)."""
    return RelayConnector.from_environment(
        os.environ, ca_file=options.ca, insecure=options.insecure
    )
