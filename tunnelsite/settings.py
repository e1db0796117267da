"""Settings for tunnelsite.

Every value comes from the environment (or a `.env` file beside manage.py) and has a
default that runs on one machine with nothing installed: SQLite and the in-memory channel
layer. `DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and channels_redis. A malformed
value stops the process at start with `ImproperlyConfigured` naming the variable.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import environ
from django.core.exceptions import ImproperlyConfigured

from relay import protocol
from relay.address import address_settings

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

T = TypeVar("T")


def _read(name: str, cast: Callable[..., T], default: Any, kind: str) -> T:
    """Read one variable, turning a malformed value into an error that names it."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError, environ.ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(
            f"{name}={env.str(name, default='')!r} is not a valid {kind}: {exc}"
        ) from None


def _int(name: str, default: int, minimum: int = 0) -> int:
    value = _read(name, env.int, default, "whole number")
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    value = _read(name, env.float, default, "number")
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a valid boolean (use true or false)")


def _port_range(name: str, default: str) -> tuple[int, int] | None:
    """`40000-40999`, a single port, or empty/`0` for ephemeral ports."""
    raw = env.str(name, default=default).strip()
    if raw in {"", "0"}:
        return None
    try:
        low, _, high = raw.partition("-")
        first, last = int(low), int(high or low)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} must look like 40000-40999") from None
    if not (1 <= first <= last <= 65535):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a port range within 1-65535")
    return first, last


def _networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for item in env.list(name, default=[]):
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP address or network"
            ) from None
    return out


def _private_host(host: str) -> bool:
    """Whether a listener on `host` is reachable only from this machine or a private network:
    loopback, RFC 1918 / unique-local, link-local ("localhost" too). Not 0.0.0.0 or ::
    (every interface), not a public address, not another host name (it could be either)."""
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_unspecified:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip in _SHARED_SPACE


# RFC 6598's shared address space: carrier-grade NAT, and the addresses of overlay networks
# such as Tailscale's, where a node's monitoring often reaches it (not is_private in Python).
_SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")


DEBUG = _bool("DEBUG", True)
# Public (it is in this file): fine for one developer's relay, never for what must stay secret.
# A cluster node refuses to start with it (runrelay), as hop markers would be forgeable.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-change-me-for-production-use-0123456789"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = DEVELOPMENT_SECRET_KEY

# --- The relay ------------------------------------------------------------------------------
RELAY_BIND = env.str("RELAY_BIND", default="127.0.0.1")
RELAY_PORT = _int("RELAY_PORT", 8080)
RELAY_DOMAIN = env.str("RELAY_DOMAIN", default="localhost").strip().lower().rstrip(".")
# --- runrelay's own TLS (relay/run/tls.py, docs/deploy.md) -------------------------------------
# A PEM certificate chain (leaf first: certbot's fullchain.pem) and its key (privkey.pem):
# runrelay then speaks only https on RELAY_PORT. Both or neither. SIGHUP reloads them.
RELAY_TLS_CERT = env.str("RELAY_TLS_CERT", default="").strip()
RELAY_TLS_KEY = env.str("RELAY_TLS_KEY", default="").strip()
if bool(RELAY_TLS_CERT) != bool(RELAY_TLS_KEY):
    raise ImproperlyConfigured(
        "RELAY_TLS_CERT and RELAY_TLS_KEY go together: give both files (certificate chain "
        "and private key) or neither"
    )
# A plain-HTTP port on RELAY_BIND that answers every request with a 308 to https (0: none).
RELAY_HTTP_REDIRECT_PORT = _int("RELAY_HTTP_REDIRECT_PORT", 0)
if RELAY_HTTP_REDIRECT_PORT > protocol.HIGHEST_PORT:
    raise ImproperlyConfigured(f"RELAY_HTTP_REDIRECT_PORT={RELAY_HTTP_REDIRECT_PORT} is not a port")
# What an operator set explicitly keeps its value when --tls-cert turns https on (runrelay).
RELAY_EXPLICIT_HTTPS_SETTINGS = {
    name: env.str(name, default="").strip() or None
    for name in (
        "RELAY_PUBLIC_SCHEME",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_NAME",
        "CSRF_COOKIE_NAME",
    )
}
# With a certificate, visitors use https: tunnel URLs, Secure cookies, the admin's origin.
RELAY_PUBLIC_SCHEME = env.str("RELAY_PUBLIC_SCHEME", default="https" if RELAY_TLS_CERT else "http")
if RELAY_PUBLIC_SCHEME not in {"http", "https"}:
    raise ImproperlyConfigured(f"RELAY_PUBLIC_SCHEME={RELAY_PUBLIC_SCHEME!r} must be http or https")
# The port visitors use; 0 means "the same as RELAY_PORT". 80/443 are left out of URLs.
RELAY_PUBLIC_PORT = _int("RELAY_PUBLIC_PORT", 0)
# Where pool listeners bind (defaults to RELAY_BIND) and which ports they take.
# ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS and RELAY_POOL_BIND follow from the address above unless
# set: relay/address.py derives them, here and again for runrelay's flags.
RELAY_EXPLICIT_SETTINGS = {
    "RELAY_POOL_BIND": env.str("RELAY_POOL_BIND", default="").strip() or None,
    "RELAY_TCP_BIND": env.str("RELAY_TCP_BIND", default="").strip() or None,
    "RELAY_TCP_HOST": env.str("RELAY_TCP_HOST", default="").strip().lower().rstrip(".") or None,
    "ALLOWED_HOSTS": env.list("ALLOWED_HOSTS", default=None),
    "CSRF_TRUSTED_ORIGINS": env.list("CSRF_TRUSTED_ORIGINS", default=None),
}
_address = address_settings(
    domain=RELAY_DOMAIN,
    bind=RELAY_BIND,
    port=RELAY_PORT,
    public_port=RELAY_PUBLIC_PORT,
    scheme=RELAY_PUBLIC_SCHEME,
    explicit=RELAY_EXPLICIT_SETTINGS,
)
RELAY_POOL_BIND = _address["RELAY_POOL_BIND"]
RELAY_POOL_PORTS = _port_range("RELAY_POOL_PORTS", "")
RELAY_MAX_SOCKETS = _int("RELAY_MAX_SOCKETS", protocol.DEFAULT_MAX_SOCKETS, minimum=1)
RELAY_MAX_TUNNELS = _int("RELAY_MAX_TUNNELS", protocol.DEFAULT_MAX_TUNNELS, minimum=1)
RELAY_POOL_ALLOW_ANY_IP = _bool("RELAY_POOL_ALLOW_ANY_IP", False)
# Reuse a raw-pipe (npm) client's pool socket for the next request. Keep-alive cannot tell
# an app's late, unasked-for answer from the next visitor's (relay/pool/reuse.py); off, each socket
# carries one exchange: strict isolation, at the cost of a reconnect per request.
RELAY_RAW_POOL_REUSE = _bool("RELAY_RAW_POOL_REUSE", True)
# Raw pool ports for clients that cannot upgrade (the npm client); false: only our lt, whose
# pool connections go over the relay's own port (TLS when it is https), may register.
RELAY_RAW_POOLS = _bool("RELAY_RAW_POOLS", True)
RELAY_GRACE_S = _float("RELAY_GRACE_S", protocol.DEFAULT_GRACE_S)
RELAY_SOCKET_WAIT_S = _float("RELAY_SOCKET_WAIT_S", protocol.DEFAULT_SOCKET_WAIT_S, minimum=0.01)
RELAY_MAX_WAITERS = _int("RELAY_MAX_WAITERS", protocol.DEFAULT_MAX_WAITERS, minimum=0)
RELAY_RESPONSE_TIMEOUT_S = _float(
    "RELAY_RESPONSE_TIMEOUT_S", protocol.DEFAULT_RESPONSE_TIMEOUT_S, minimum=0.01
)
RELAY_MAX_HEADER_BYTES = _int(
    "RELAY_MAX_HEADER_BYTES", protocol.DEFAULT_MAX_HEADER_BYTES, minimum=1024
)
RELAY_MAX_HEADER_COUNT = _int(
    "RELAY_MAX_HEADER_COUNT", protocol.DEFAULT_MAX_HEADER_COUNT, minimum=8
)
RELAY_MAX_REQUEST_LINE_BYTES = _int(
    "RELAY_MAX_REQUEST_LINE_BYTES", protocol.DEFAULT_MAX_REQUEST_LINE_BYTES, minimum=256
)
RELAY_MAX_BODY_BYTES = _int("RELAY_MAX_BODY_BYTES", protocol.DEFAULT_MAX_BODY_BYTES)
RELAY_HEADER_TIMEOUT_S = _float(
    "RELAY_HEADER_TIMEOUT_S", protocol.DEFAULT_HEADER_TIMEOUT_S, minimum=0.1
)
RELAY_IDLE_TIMEOUT_S = _float("RELAY_IDLE_TIMEOUT_S", protocol.DEFAULT_IDLE_TIMEOUT_S)
RELAY_BODY_TIMEOUT_S = _float("RELAY_BODY_TIMEOUT_S", protocol.DEFAULT_BODY_TIMEOUT_S, minimum=0.1)
RELAY_BODY_MIN_RATE_BYTES_S = _int(
    "RELAY_BODY_MIN_RATE_BYTES_S", protocol.DEFAULT_BODY_MIN_RATE_BYTES_S, minimum=1
)
RELAY_BODY_MAX_AHEAD_S = _float(
    "RELAY_BODY_MAX_AHEAD_S", protocol.DEFAULT_BODY_MAX_AHEAD_S, minimum=RELAY_BODY_TIMEOUT_S
)
RELAY_MAX_CONNECTIONS_PER_IP = _int(
    "RELAY_MAX_CONNECTIONS_PER_IP", protocol.DEFAULT_MAX_CONNECTIONS_PER_IP
)
RELAY_DRAIN_S = _float("RELAY_DRAIN_S", protocol.DEFAULT_DRAIN_S)
RELAY_WS_BUFFER_BYTES = _int(
    "RELAY_WS_BUFFER_BYTES", protocol.DEFAULT_WS_BUFFER_BYTES, minimum=64 * 1024
)
RELAY_SPARE_SOCKETS = _int(
    "RELAY_SPARE_SOCKETS", _int("RELAY_WS_SPARE_SOCKETS", protocol.DEFAULT_SPARE_SOCKETS)
)
RELAY_WS_MAX_PER_VISITOR = _int(
    "RELAY_WS_MAX_PER_VISITOR", protocol.DEFAULT_WS_MAX_PER_VISITOR, minimum=1
)
RELAY_FLUSH_S = _float("RELAY_FLUSH_S", protocol.DEFAULT_FLUSH_S, minimum=0.05)
RELAY_TRUSTED_PROXIES = _networks("RELAY_TRUSTED_PROXIES")
RELAY_UVLOOP = _bool("RELAY_UVLOOP", True)

# --- Accounts and quotas (tunnels/plans.py) ---------------------------------------------------
# Registering without a token: allowed while developing, refused (401) in production.
RELAY_ALLOW_ANONYMOUS = _bool("RELAY_ALLOW_ANONYMOUS", DEBUG)
# Recorded on each session row; names the relay once there are several.
RELAY_NODE_NAME = env.str("RELAY_NODE_NAME", default="")
# --- scale-out: many nodes on one database and one Redis (relay/cluster/node.py) -----------------
# Set RELAY_NODE_NAME to run as one node of several. Empty: one process, none of this runs.
if RELAY_NODE_NAME and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", RELAY_NODE_NAME):
    raise ImproperlyConfigured(
        f"RELAY_NODE_NAME={RELAY_NODE_NAME!r} must be 1-100 letters, digits, '.', '_' or '-'"
    )
# HOST:PORT where peers reach this node's public listener; its HOST is the `ip` handed to
# clients for pool sockets. Empty: the address runrelay listens on (not a wildcard).
RELAY_ADVERTISE = env.str("RELAY_ADVERTISE", default="").strip()
# scale-out: this node's public base URL for our lt's pool connections (e.g.
# https://node-a.example.com); empty: RELAY_PUBLIC_SCHEME://<RELAY_ADVERTISE or listen address>.
RELAY_NODE_URL = env.str("RELAY_NODE_URL", default="").strip().rstrip("/")
RELAY_HEARTBEAT_S = _float("RELAY_HEARTBEAT_S", protocol.DEFAULT_HEARTBEAT_S, minimum=0.05)
RELAY_NODE_EXPIRY_S = _float("RELAY_NODE_EXPIRY_S", protocol.DEFAULT_NODE_EXPIRY_S, minimum=0.1)
if RELAY_NODE_EXPIRY_S <= RELAY_HEARTBEAT_S:
    raise ImproperlyConfigured(
        f"RELAY_NODE_EXPIRY_S={RELAY_NODE_EXPIRY_S:g} must be more than "
        f"RELAY_HEARTBEAT_S={RELAY_HEARTBEAT_S:g} (three heartbeats is usual)"
    )
RELAY_PEER_CONNECT_S = _float("RELAY_PEER_CONNECT_S", protocol.DEFAULT_PEER_CONNECT_S, minimum=0.01)
# --- end scale-out ----------------------------------------------------------------------------
# Names only the operator may hand out (with a ReservedSubdomain row). Names shorter than 4
# characters (www, api) are already refused by the subdomain rule; they are listed for clarity.
RELAY_RESERVED_NAMES = frozenset(
    name.strip().lower()
    for name in env.list(
        "RELAY_RESERVED_NAMES",
        default="www api admin static mail smtp imap ftp relay status login assets media".split(),
    )
    if name.strip()
)
# The plan of users without one, and of anonymous tunnels. 0 means "no limit".
RELAY_DEFAULT_PLAN_MAX_LIVE_TUNNELS = _int("RELAY_DEFAULT_PLAN_MAX_LIVE_TUNNELS", 5)
RELAY_DEFAULT_PLAN_MAX_SOCKETS = _int("RELAY_DEFAULT_PLAN_MAX_SOCKETS", RELAY_MAX_SOCKETS, 1)
RELAY_DEFAULT_PLAN_MAX_REQUESTS_PER_MINUTE = _int("RELAY_DEFAULT_PLAN_MAX_REQUESTS_PER_MINUTE", 0)
RELAY_DEFAULT_PLAN_MAX_BYTES_PER_DAY = _int("RELAY_DEFAULT_PLAN_MAX_BYTES_PER_DAY", 0)
RELAY_DEFAULT_PLAN_MAX_REQUEST_BODY_BYTES = _int("RELAY_DEFAULT_PLAN_MAX_REQUEST_BODY_BYTES", 0)
RELAY_DEFAULT_PLAN_IDLE_TIMEOUT_S = _int("RELAY_DEFAULT_PLAN_IDLE_TIMEOUT_S", 0)
RELAY_DEFAULT_PLAN_ALLOW_CUSTOM_SUBDOMAINS = _bool(
    "RELAY_DEFAULT_PLAN_ALLOW_CUSTOM_SUBDOMAINS", True
)
# --- registry: rate, retention, IPv6 owners -----------------------------------------------
RELAY_REGISTRATION_BURST = _int(
    "RELAY_REGISTRATION_BURST", protocol.DEFAULT_REGISTRATION_BURST, minimum=1
)
RELAY_REGISTRATIONS_PER_MINUTE = _float(
    "RELAY_REGISTRATIONS_PER_MINUTE", protocol.DEFAULT_REGISTRATIONS_PER_MINUTE
)
RELAY_SESSION_RETENTION_DAYS = _int(
    "RELAY_SESSION_RETENTION_DAYS", protocol.DEFAULT_SESSION_RETENTION_DAYS
)
RELAY_IPV6_PREFIX = _int("RELAY_IPV6_PREFIX", protocol.DEFAULT_IPV6_PREFIX, minimum=1)
if RELAY_IPV6_PREFIX > 128:
    raise ImproperlyConfigured(f"RELAY_IPV6_PREFIX={RELAY_IPV6_PREFIX} must be at most 128")
# --- who may visit a tunnel (docs/security.md, "Visitor access") ------------------------------
# The warning page before a tunnel's app: for anonymous tunnels, for all, or never. A plan
# and a reserved name may turn it on or off for their tunnels.
RELAY_INTERSTITIAL = env.str("RELAY_INTERSTITIAL", default=protocol.DEFAULT_INTERSTITIAL).strip()
if RELAY_INTERSTITIAL not in protocol.INTERSTITIAL_CHOICES:
    raise ImproperlyConfigured(
        f"RELAY_INTERSTITIAL={RELAY_INTERSTITIAL!r} must be one of "
        + ", ".join(protocol.INTERSTITIAL_CHOICES)
    )
# How long a team member's pass for one tunnel host lasts (a signed, host-only cookie).
RELAY_VISITOR_COOKIE_MAX_AGE_S = _int(
    "RELAY_VISITOR_COOKIE_MAX_AGE_S", protocol.DEFAULT_VISITOR_COOKIE_MAX_AGE_S, minimum=60
)
RELAY_WARNED_COOKIE_MAX_AGE_S = _int(
    "RELAY_WARNED_COOKIE_MAX_AGE_S", protocol.DEFAULT_WARNED_COOKIE_MAX_AGE_S, minimum=60
)
# After the admin's Disconnect: the name and its owner's registrations are refused this long.
RELAY_DISCONNECT_COOLDOWN_S = _float(
    "RELAY_DISCONNECT_COOLDOWN_S", protocol.DEFAULT_DISCONNECT_COOLDOWN_S
)
# --- the account page (docs/account.md) -------------------------------------------------------
# The request inspector: exchanges kept per tunnel, body bytes kept per body, and the bound
# for all tunnels' captures together (the oldest go first). A plan turns it off (privacy).
RELAY_INSPECT_REQUESTS = _int(
    "RELAY_INSPECT_REQUESTS", protocol.DEFAULT_INSPECT_REQUESTS, minimum=0
)
RELAY_INSPECT_BODY_BYTES = _int(
    "RELAY_INSPECT_BODY_BYTES", protocol.DEFAULT_INSPECT_BODY_BYTES, minimum=0
)
RELAY_INSPECT_MEMORY_BYTES = _int(
    "RELAY_INSPECT_MEMORY_BYTES", protocol.DEFAULT_INSPECT_MEMORY_BYTES, minimum=0
)
# Whether staff may open (and replay) the captures of other users' tunnels. Off: only the
# tunnel's owner, staff included, sees its traffic.
RELAY_INSPECT_STAFF = _bool("RELAY_INSPECT_STAFF", False)
# `lt login` in the browser (RFC 8628): how long a device code lives, and lt's poll interval.
DEVICE_CODE_TTL_S = _int("DEVICE_CODE_TTL_S", protocol.DEFAULT_DEVICE_CODE_TTL_S, minimum=30)
DEVICE_POLL_INTERVAL_S = _int(
    "DEVICE_POLL_INTERVAL_S", protocol.DEFAULT_DEVICE_POLL_INTERVAL_S, minimum=1
)
# Anyone may create an account at /accounts/signup/ (off: operators create them in the admin).
ACCOUNT_SIGNUP_OPEN = _bool("ACCOUNT_SIGNUP_OPEN", False)
# The default plan's part of the account page: names a user may reserve there, and whether
# the inspector keeps their tunnels' requests.
RELAY_DEFAULT_PLAN_MAX_RESERVED_NAMES = _int("RELAY_DEFAULT_PLAN_MAX_RESERVED_NAMES", 1, minimum=0)
RELAY_DEFAULT_PLAN_INSPECT = _bool("RELAY_DEFAULT_PLAN_INSPECT", True)
# --- TCP tunnels, `lt tcp` (docs/tcp.md) ---------------------------------------------------------
# The public ports TCP tunnels get, e.g. 20000-20999 (open them in the firewall); empty: TCP
# tunnels are off and `lt tcp` is told so. On a cluster, give each node its own range
# (docs/cluster.md): a TCP port belongs to the node that registered its tunnel.
RELAY_TCP_PORTS = _port_range("RELAY_TCP_PORTS", "")
# Where TCP tunnels' ports listen (default: RELAY_BIND), and the host their tcp:// URL names
# (default: RELAY_DOMAIN); relay/address.py derives them, here and for runrelay's flags.
RELAY_TCP_BIND = _address["RELAY_TCP_BIND"]
RELAY_TCP_HOST = _address["RELAY_TCP_HOST"]
# A TCP visitor connection with no bytes either way this long is closed (0: never).
RELAY_TCP_IDLE_TIMEOUT_S = _float("RELAY_TCP_IDLE_TIMEOUT_S", protocol.DEFAULT_TCP_IDLE_TIMEOUT_S)
# Networks of TCP balancers (HAProxy `send-proxy`) in front of TCP tunnels' ports: a
# connection from one must start with a PROXY protocol v1 header, whose source is then the
# visitor's address (CIDR rules, per-address limits, quotas, lt's OPEN); empty: none.
RELAY_TCP_PROXY_PROTOCOL = _networks("RELAY_TCP_PROXY_PROTOCOL")
# How long a TCP visitor waits for a free pool connection, and how many may wait per tunnel.
RELAY_TCP_WAIT_S = _float("RELAY_TCP_WAIT_S", protocol.DEFAULT_TCP_WAIT_S, minimum=0.01)
RELAY_TCP_MAX_WAITERS = _int("RELAY_TCP_MAX_WAITERS", protocol.DEFAULT_TCP_MAX_WAITERS, minimum=0)
# Anonymous tunnels (no token) may be TCP tunnels: off, since a raw port is easier to abuse
# than a named HTTP host (and cannot show a warning page).
RELAY_TCP_ANONYMOUS = _bool("RELAY_TCP_ANONYMOUS", False)
# The default plan's TCP tunnels: whether it allows them, and how many live ones per user
# (0: no limit).
RELAY_DEFAULT_PLAN_TCP = _bool("RELAY_DEFAULT_PLAN_TCP", True)
RELAY_DEFAULT_PLAN_MAX_TCP_TUNNELS = _int("RELAY_DEFAULT_PLAN_MAX_TCP_TUNNELS", 2, minimum=0)
# --- running it as a service: metrics, account quotas, logs (docs/metrics.md, docs/logs.md) ------
# /metrics in Prometheus' text format: on the bare domain for `Authorization: Bearer <token>`
# when RELAY_METRICS_TOKEN is set, and/or on its own listener (HOST:PORT, no token) when
# RELAY_METRICS_BIND is. Neither: /metrics answers 404 saying how to turn it on.
RELAY_METRICS_TOKEN = env.str("RELAY_METRICS_TOKEN", default="").strip()
if RELAY_METRICS_TOKEN and len(RELAY_METRICS_TOKEN) < protocol.METRICS_TOKEN_MIN_CHARS:
    raise ImproperlyConfigured(
        f"RELAY_METRICS_TOKEN is {len(RELAY_METRICS_TOKEN)} characters long; it must be at least "
        f"{protocol.METRICS_TOKEN_MIN_CHARS}, since it guards /metrics on the public bare domain. "
        "Make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
RELAY_METRICS_BIND = env.str("RELAY_METRICS_BIND", default="").strip()
# RELAY_METRICS_BIND's listener has no token: on an address that is not loopback or private
# (0.0.0.0, ::, a public address, a host name) it is refused unless this says a firewall or
# the network keeps strangers out.
RELAY_METRICS_BIND_PUBLIC = _bool("RELAY_METRICS_BIND_PUBLIC", False)
if RELAY_METRICS_BIND:  # HOST:PORT, an IPv6 host in brackets; port 0: any free one (printed)
    _host, _colon, _port = RELAY_METRICS_BIND.rpartition(":")
    if (
        not _colon
        or not _host.strip("[]")
        or not _port.isdigit()
        or int(_port) > protocol.HIGHEST_PORT
        or (":" in _host and not (_host.startswith("[") and _host.endswith("]")))
    ):
        raise ImproperlyConfigured(
            f"RELAY_METRICS_BIND={RELAY_METRICS_BIND!r} must look like HOST:PORT, e.g. "
            "127.0.0.1:9100 or [::1]:9100 (port 0: any free port, printed at start)"
        )
    if not RELAY_METRICS_BIND_PUBLIC and not _private_host(_host.strip("[]")):
        raise ImproperlyConfigured(
            f"RELAY_METRICS_BIND={RELAY_METRICS_BIND!r} would serve /metrics without a token on "
            "an address that may be reachable from anywhere: bind a loopback or private "
            "address (127.0.0.1:9100, 10.0.0.5:9100), use RELAY_METRICS_TOKEN on the bare "
            "domain instead, or set RELAY_METRICS_BIND_PUBLIC=true if a firewall keeps "
            "strangers out"
        )
# A label per tunnel name (unbounded: as many series as tunnels); off, labels are per plan and
# node only.
RELAY_METRICS_PER_TUNNEL = _bool("RELAY_METRICS_PER_TUNNEL", False)
# The default plan's bandwidth for each account, bytes per second in each direction
# (0: no limit); data waits (backpressure), it is never dropped.
RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND = _int(
    "RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND", 0, minimum=0
)
if 0 < RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND < protocol.BANDWIDTH_MIN_BYTES_PER_SECOND:
    raise ImproperlyConfigured(
        f"RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND={RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND} must "
        f"be 0 (no limit) or at least {protocol.BANDWIDTH_MIN_BYTES_PER_SECOND} (16 KiB/s)"
    )

# --- Django -----------------------------------------------------------------------------------
# Only the bare domain reaches Django: `<name>.<domain>` goes to the relay before Django,
# and deeper hosts (`a.b.<domain>`) are no one's, so they get Django's 400.
ALLOWED_HOSTS = _address["ALLOWED_HOSTS"]

# Daphne is not an installed app: its AppConfig would import daphne.server (and create the
# event loop) before `runrelay` can choose uvloop. `runrelay` is the server.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "tunnels",
    "relay",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and scripts, on the bare domain only (tunnel hosts never reach Django).
    "tunnelsite.static.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who acts, for the operator_action log line (tunnels/actor.py): after the user is known.
    "tunnels.actor.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tunnelsite.urls"
# Visitors of team-only tunnels and users of the account pages sign in here (tunnels/views.py);
# the admin keeps its own sign-in page for operators.
LOGIN_URL = "/accounts/login/"
# After signing in without a `next`: the user's account page (tunnels/account.py).
LOGIN_REDIRECT_URL = "/account/"
ASGI_APPLICATION = "tunnelsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
if _database_url.split("://", 1)[0] not in environ.Env.DB_SCHEMES:
    raise ImproperlyConfigured(
        f"DATABASE_URL={_database_url!r} must start with sqlite:// or postgres:// "
        "(e.g. postgres://user@127.0.0.1:5432/tunnelsite)"
    )
DATABASES = {"default": _read("DATABASE_URL", env.db_url, _database_url, "database URL")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Waiting briefly on a lock beats failing a registration outright. IMMEDIATE makes a
    # transaction take the write lock at BEGIN, so it waits for `timeout`; a deferred one that
    # reads first fails at once ("database is locked") when another writer holds the lock.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 5
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    # WAL lets the admin read while the relay writes; with synchronous=NORMAL a commit needs
    # no fsync (a power cut can lose the last few counter updates, never corrupt the file).
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
if DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # A database that stops answering must not hold registrations, flushes and heartbeats
    # behind it for ever on the relay's few database threads (relay/database.py).
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    _pg_options.setdefault("connect_timeout", 5)
    _pg_options.setdefault("options", "-c statement_timeout=10000")
    # Those threads keep their connections: each call checks its connection first (one
    # round trip), so a restarted server costs no failed registration; and a server that
    # went silent (a failover to another address) is given up within ~1 min by TCP
    # keepalives and tcp_user_timeout, not the ~15 min of the kernel's retransmissions.
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    for _option, _value in {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
    }.items():
        _pg_options.setdefault(_option, _value)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# A channel holds 100 waiting messages by default and the sender drops the rest silently. A node
# that stops announces every tunnel it closes to every other node at once, and a listener may be
# reconnecting: a relay's control channel (relay/cluster/control.py) has room for bursts, so an
# admin's close sent among them lands. Still bounded: the layer drops messages older than a minute.
_CONTROL_CHANNEL_CAPACITY = {"relay-control.*": 20000}
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis:// or rediss://")
    # channels_redis waits for a message with a 5 s blocking read (BZPOPMIN, brpop_timeout)
    # and redis-py abandons any read after its socket timeout, 5 s by default: an idle relay's
    # control listener raced the two, and a message Redis popped as the client gave up was
    # lost. Reads wait longer than the blocking read; a dead Redis is still noticed.
    REDIS_SOCKET_TIMEOUT_S = 15.0
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": REDIS_SOCKET_TIMEOUT_S}],
                "channel_capacity": _CONTROL_CHANNEL_CAPACITY,
            },
        }
    }
else:
    # One process (no other node announces anything): the default room of 100 is plenty.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Error reports (DEBUG's 500 page, mails to ADMINS) hide the relay's secret headers too: our
# lt's visitor rules carry basic-auth passwords (tunnels/reporting.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "tunnels.reporting.ReporterFilter"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# runrelay serves static files itself with WhiteNoise (no proxy needed). In production
# (`DEBUG=false`) it runs collectstatic into STATIC_ROOT at start: hashed names cached for
# ever, gzip copies; while developing they are read from the apps, so nothing is collected.
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Cookies belong to the bare domain only: a tunnel must never see or set the admin's session.
# (A tunnel's own `Set-Cookie: ...; Domain=<RELAY_DOMAIN>` is made host-only by relay/headers.py.)
SESSION_COOKIE_DOMAIN = None
CSRF_COOKIE_DOMAIN = None

# --- HTTPS (`check --deploy`; docs/deploy.md "What check --deploy still says") ----------------
_https = RELAY_PUBLIC_SCHEME == "https"
SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", _https)
CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", _https)
# Secure cookies get `__Host-` names: browsers accept such a cookie only without a Domain, so
# no tunnel can plant one for the admin, not even from its JavaScript (document.cookie).
SESSION_COOKIE_NAME = env.str(
    "SESSION_COOKIE_NAME", default="__Host-sessionid" if SESSION_COOKIE_SECURE else "sessionid"
)
CSRF_COOKIE_NAME = env.str(
    "CSRF_COOKIE_NAME", default="__Host-csrftoken" if CSRF_COOKIE_SECURE else "csrftoken"
)
# Behind a TLS proxy Django sees http: trust the origin visitors use for the admin's forms.
CSRF_TRUSTED_ORIGINS = _address["CSRF_TRUSTED_ORIGINS"]
# The header a TLS proxy sets to `https` (e.g. X-Forwarded-Proto). Only when every request
# comes through that proxy, which must overwrite the header: anyone else could forge it.
_proxy_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="").strip()
if _proxy_ssl_header and not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_ssl_header):
    raise ImproperlyConfigured(
        f"SECURE_PROXY_SSL_HEADER={_proxy_ssl_header!r} must be a header name "
        "such as X-Forwarded-Proto"
    )
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
# Redirecting the admin to https needs Django to know a request was https (the header above);
# without it every redirect would come back as http and redirect again.
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", False)
# (With RELAY_TLS_CERT, Django sees runrelay's own https directly: no header is needed.)
if SECURE_SSL_REDIRECT and SECURE_PROXY_SSL_HEADER is None and not RELAY_TLS_CERT:
    raise ImproperlyConfigured(
        "SECURE_SSL_REDIRECT=true needs SECURE_PROXY_SSL_HEADER (e.g. X-Forwarded-Proto) or "
        "RELAY_TLS_CERT: without either runrelay speaks only http, so every request would be "
        "redirected forever"
    )
# HSTS is off unless asked for: it binds browsers to https for the bare domain (and, with
# SECURE_HSTS_INCLUDE_SUBDOMAINS, for every tunnel) for this many seconds.
SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", False)

# Masks tokens, passwords and URL user-info in every log record (tunnelsite/logconfig.py).
LOGGING_CONFIG = "tunnelsite.logconfig.configure"
RELAY_LOG_LEVEL = env.str("RELAY_LOG_LEVEL", default="INFO").strip().upper()
if RELAY_LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"RELAY_LOG_LEVEL={RELAY_LOG_LEVEL!r} is not a log level "
        "(use DEBUG, INFO, WARNING, ERROR or CRITICAL)"
    )
# `text`: one readable line per event; `json`: one JSON object per line (tunnelsite/logconfig.py).
RELAY_LOG_FORMAT = env.str("RELAY_LOG_FORMAT", default="text").strip().lower()
if RELAY_LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"RELAY_LOG_FORMAT={RELAY_LOG_FORMAT!r} must be text or json")
# One line per visitor request (logger relay.access, at INFO): off by default, since the byte
# path logs nothing per request otherwise.
RELAY_ACCESS_LOG = _bool("RELAY_ACCESS_LOG", False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "tunnelsite.logconfig.JsonFormatter"},
    },
    "handlers": {
        # Writes to the current sys.stderr: runrelay makes that non-blocking (relay/run/console.py).
        "console": {
            "class": "relay.run.console.ConsoleHandler",
            "formatter": "json" if RELAY_LOG_FORMAT == "json" else "plain",
        },
        "null": {"class": "logging.NullHandler"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "relay": {"level": RELAY_LOG_LEVEL},
        "tunnels": {"level": RELAY_LOG_LEVEL},
        # The access log is INFO lines whatever RELAY_LOG_LEVEL says, when it is on at all
        # (relay/access_log.py; off, nothing calls it).
        "relay.access": {"level": "INFO"},
        # Django's own default config gives "django" a second console handler (bare lines,
        # no time): without this every django.request warning was printed twice.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # Any visitor can send a malformed Host; Django answers 400 and would log a traceback
        # at ERROR for each, letting anyone flood the log.
        "django.security.DisallowedHost": {"handlers": ["null"], "propagate": False},
    },
}
