"""The localtunnel wire protocol, as tunnelsite speaks it. Everything the npm client and
our own client depend on lives here: the subdomain rule, the registration answer, the
headers a proxy must not forward, and how errors reach clients that cannot read statuses.
"""

from __future__ import annotations

import ipaddress
import re
import secrets

# The reference server's id rule (4-63 alphanumerics, or 6-65 characters with inner hyphens)
# capped at 63 characters: a name is one DNS label, and a 64-character label resolves
# nowhere, so such a tunnel could never be visited. Matched whole (`fullmatch`: a `$`
# would let a trailing newline through, and `GET /abcd%0A` register "abcd\n").
SUBDOMAIN_MIN_CHARS = 4
SUBDOMAIN_MIN_CHARS_WITH_HYPHEN = 6  # the reference server's: a letter or digit at each end
SUBDOMAIN_MAX_CHARS = 63  # one DNS label
SUBDOMAIN_RE = re.compile(
    rf"[a-z0-9][a-z0-9-]{{{SUBDOMAIN_MIN_CHARS_WITH_HYPHEN - 2},{SUBDOMAIN_MAX_CHARS - 2}}}"
    rf"[a-z0-9]|[a-z0-9]{{{SUBDOMAIN_MIN_CHARS},{SUBDOMAIN_MAX_CHARS}}}"
)
# The rule in words, for every refusal of a name for its shape (registration, the account
# page's reservations, the admin): one sentence, made from the numbers above.
SUBDOMAIN_RULE = (
    f"a tunnel name is {SUBDOMAIN_MIN_CHARS} to {SUBDOMAIN_MAX_CHARS} lowercase letters "
    f"and digits; hyphens may go inside (not first or last) when the name has at least "
    f"{SUBDOMAIN_MIN_CHARS_WITH_HYPHEN} characters"
)

# Words used for random names: two short words read better in a URL than hex
# ("quiet-fox-3f9a"), and the 4 hex digits keep collisions rare at 5,000 live tunnels.
_ADJECTIVES = (
    "quiet brave calm eager fancy gentle happy jolly kind lively merry nice proud silly "
    "sunny witty bold bright clever cool crisp fresh grand keen lucky mellow noble rapid"
).split()
_NOUNS = (
    "fox owl cat dog eel elk emu gnu hen jay kit koi lark mole moth newt orca puma ram "
    "seal swan toad wolf yak bee crab deer duck frog hare ibis lynx mink"
).split()

# A visitor who finds a tunnel with no pool socket waits this long for one when the tunnel
# had sockets (or was registered) this recently: the npm client replaces a closed socket at
# once, and a brand-new tunnel's client is still connecting. Visitors of a tunnel whose
# client has really gone hear 503 after this instead of waiting RELAY_SOCKET_WAIT_S.
RECONNECT_WAIT_S = 2.0

# TCP keepalive on accepted pool sockets: a client whose network went away (a laptop that
# sleeps or changes Wi-Fi) leaves sockets the relay would count as live for hours, and a live
# client keeps its name from its owner's next client (a 409). Idle 15 s, then 3 probes 5 s
# apart: such a socket is closed within about 30 s, and the owner's new client gets the name.
POOL_KEEPALIVE_IDLE_S, POOL_KEEPALIVE_INTERVAL_S, POOL_KEEPALIVE_COUNT = 15, 5, 3

# Hop-by-hop headers (RFC 9110 section 7.6.1) plus the framing headers the relay sets
# itself. They are never copied from one connection to the other.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)

# Headers the relay sets for the tunnel client; visitors' own values are replaced.
# X-Real-IP is the visitor's address as the relay saw it (nginx's name for it): apps and
# frameworks trust it as much as X-Forwarded-For, so a visitor's own must never get through.
FORWARDED_HEADERS = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-real-ip",
    }
)
# Other headers that name "the client's address" to some framework or CDN setup (RFC 7239
# Forwarded, Akamai/Cloudflare's True-Client-IP, CF-Connecting-IP, X-Client-IP): the relay
# sets none of them, and a visitor's own is dropped, so an app reading them cannot be fooled.
CLIENT_ADDRESS_HEADERS = frozenset(
    {b"forwarded", b"x-client-ip", b"true-client-ip", b"cf-connecting-ip"}
)

# The npm client (axios 0.21) retries any non-2xx answer every second forever without
# printing anything, but fails loudly with the body's `message` on a 2xx other than 200.
# So registration errors go to it as 203 with the real status in the body and a header.
NPM_CLIENT_ERROR_STATUS = 203
_NPM_USER_AGENT = re.compile(rb"^axios/")


def is_valid_subdomain(name: str) -> bool:
    return SUBDOMAIN_RE.fullmatch(name) is not None


def random_subdomain() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.token_hex(2)}"


def is_npm_client(user_agent: bytes) -> bool:
    return bool(_NPM_USER_AGENT.match(user_agent))


def error_status_for(user_agent: bytes, status: int) -> int:
    """The HTTP status to answer a registration error with (see NPM_CLIENT_ERROR_STATUS).

    Only client errors (4xx: bad token, name taken, over quota) are turned into 203, since
    retrying cannot help there; a 5xx (relay draining, database briefly down) stays a 5xx so
    the npm client keeps retrying until the relay is back.
    """
    if 400 <= status < 500 and is_npm_client(user_agent):
        return NPM_CLIENT_ERROR_STATUS
    return status


def relay_url(scheme: str, domain: str, port: int) -> str:
    """The relay's own URL, as visitors and clients reach it (what `lt --host` takes)."""
    default = 443 if scheme == "https" else 80
    suffix = "" if port in (0, default) else f":{port}"
    return f"{scheme}://{domain}{suffix}"


def local_path(text: str) -> str:
    """`text` when it is a path on the same host, else "/": where a visitor is sent back
    after signing in or pressing Continue, never another site (no open redirect). Refused:
    anything not starting with one "/", a protocol-relative "//" or "/\\" (browsers read a
    backslash as a slash), spaces, control and non-ASCII characters (a Location header is
    ASCII), and anything longer than MAX_NEXT_CHARS. The relay's gate and the bare domain's
    sign-in (tunnels/signin.py) both use this one check."""
    if (
        not text.startswith("/")
        or text.startswith(("//", "/\\"))
        or len(text) > MAX_NEXT_CHARS
        or any(not ("!" <= char <= "~") for char in text)
    ):
        return "/"
    return text


def public_url(scheme: str, name: str, domain: str, port: int) -> str:
    return relay_url(scheme, f"{name}.{domain}", port)


def lt_command(relay: str, token: str) -> str:
    """The command that opens a tunnel with `token` (in --token, never in the URL, where
    it would show in every line that prints the relay's address)."""
    return f"lt --port 3000 --host {relay} --token {token}"


def registration_answer(
    name: str,
    port: int,
    max_conn_count: int,
    url: str,
    ip: str | None = None,
    *,
    pool_base: str = "",
    pool_secret: str = "",
    tcp_port: int = 0,
) -> dict[str, object]:
    """The JSON body of a successful `GET /?new` or `GET /<name>`; with `pool_base` (the
    node's public base URL) and `pool_secret`, our lt's upgraded pool (see POOL_PATH); with
    `tcp_port`, a TCP tunnel's public port (its `url` is then tcp://host:port)."""
    answer: dict[str, object] = {
        "id": name,
        "port": port,
        "max_conn_count": max_conn_count,
        "url": url,
    }
    if tcp_port:
        answer["tcp_port"] = tcp_port
    if ip:
        answer["ip"] = ip
    if pool_base and pool_secret:
        answer["pool_url"] = pool_base.rstrip("/") + POOL_PATH.format(name=name)
        answer["pool_secret"] = pool_secret
    return answer


# A Host's port (RFC 9110 section 7.2, RFC 3986 section 3.2.3): digits, a TCP port.
_HOST_PORT = re.compile(rb"[0-9]{1,5}")
HIGHEST_PORT = 65535  # TCP's: also the bound of --port and of a node's HOST:PORT

# /metrics (relay/metrics.py, docs/metrics.md): its path on the bare domain and on the
# listener of its own (RELAY_METRICS_BIND, relay/run/metrics_listener.py). That listener
# answers one request per connection; Prometheus sends a head of a few hundred bytes at
# once, so 8 KiB and 5 s are far beyond a scraper and bound a slow or huge request; 64
# connections at once leave room for several Prometheus servers and a curl or two, and
# bound a flood (when full, the oldest connection still without its head is dropped).
METRICS_PATH = "/metrics"
METRICS_MAX_HEAD_BYTES = 8192
METRICS_HEAD_TIMEOUT_S = 5.0
METRICS_MAX_CONNECTIONS = 64
# Writing the exposition to a scraper that stops reading: given up after this.
METRICS_WRITE_TIMEOUT_S = 10.0
# RELAY_METRICS_TOKEN is refused at start when shorter than this: a bearer token is the only
# thing between anyone on the internet and the bare domain's /metrics, so it must be too long
# to guess (32 characters of `secrets.token_urlsafe` carry 192 bits; the docs' command makes 43).
METRICS_TOKEN_MIN_CHARS = 32
# Wrong or missing tokens on the bare domain's /metrics, per client address: past
# METRICS_FAILURES_PER_ADDRESS in one METRICS_FAILURE_WINDOW_S window, the address gets 429
# until the window ends and its token is not even compared. A scraper with the right token
# never fails; a person trying curl has room for mistakes; a guesser is held to a few hundred
# tries an hour (a long token makes guessing hopeless anyway: this bounds the work and the
# log lines). At most METRICS_FAILURE_ADDRESSES_KEPT addresses are remembered per window;
# past that, more failing addresses are only refused, not held back (so a table filled by
# many addresses can never lock out a scraper that never failed).
METRICS_FAILURES_PER_ADDRESS = 20
METRICS_FAILURE_WINDOW_S = 60.0
METRICS_FAILURE_ADDRESSES_KEPT = 4096
# Answers counted by status class, status // 100: a status has three digits (h11 and Twisted
# take 100-999), so ten classes; /metrics reports 1xx-5xx and the rest as "other".
STATUS_CLASSES = 10


def tunnel_name_from_host(host: bytes, domain: bytes) -> str | None:
    """`quiet-fox.localhost:8080` -> `quiet-fox` when domain is `localhost`; else None.

    Only one label below the domain counts: `a.b.localhost` is not a tunnel. Anything after
    the name but a port makes it no tunnel's Host (Django then refuses it with a 400): the Host
    reaches the app as the visitor sent it, so `quiet-fox.localhost:8080@evil.example` must
    not, or an app that builds links from its Host would point them elsewhere.
    """
    host, colon, port = host.partition(b":")
    if colon and not (_HOST_PORT.fullmatch(port) and 0 < int(port) <= HIGHEST_PORT):
        return None
    host = host.lower()
    host = host[:-1] if host.endswith(b".") else host  # one root dot: `a.localhost..` is no name
    if not host.endswith(b"." + domain):
        return None
    label = host[: -len(domain) - 1]
    if not label or b"." in label:
        return None
    try:
        return label.decode("ascii")
    except UnicodeDecodeError:
        return None


# --- between cluster nodes (relay/cluster/hop.py) -------------------------------------------------
# The signed marker a node adds to a request it forwards to the tunnel's owner node.
HOP_HEADER = b"x-tunnelsite-hop"
# A marker older (or newer) than this is refused: it bounds replays of a captured one, and
# a minute is far more than any forward takes or any two nodes' clocks should disagree.
HOP_MAX_AGE_S = 60
# Set in the scope of a request that arrived from a peer node with a valid marker.
HOP_SCOPE_KEY = "tunnelsite.hop"


# --- headers the relay sets ------------------------------------------------------------------
# On every error answer the relay itself gives (relay/errors.py), with the status: a visitor's
# tool can tell the relay's 502 from the app's, and a forwarding node (relay/cluster/peer_proxy.py)
# tells "the owner no longer has this tunnel" (404) from an app's own 404.
ERROR_HEADER = b"x-tunnelsite-error"


# --- the visitor's Host, read once ----------------------------------------------------------
# In scope["extensions"] of an HTTP request: the tunnel name its one Host header names (None:
# the site), as relay/edge/channel.py read it for the body limit; the router and the gate
# take it from there. Absent when the request had no single Host (or for a WebSocket).
TUNNEL_SCOPE_KEY = "tunnelsite.tunnel"


# --- the admin's channel --------------------------------------------------------------------------
# The channel-layer group every relay listens on for control messages (relay/cluster/control.py):
# `tunnel.close` from the admin (relay.face.close_message), `tunnel.owner` and
# `tunnel.release` between cluster nodes.
CONTROL_GROUP = "relay-control"


# --- who holds a name -------------------------------------------------------------------------
# Our lt sends a random id per run in this header, so a re-registration after it lost its
# pool sockets is known as the same client reconnecting (the relay may not have seen those
# sockets close yet), not as a second client fighting for the name.
CLIENT_ID_HEADER = "X-Tunnelsite-Client"
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")  # matched whole: fullmatch
# `GET /<name>?takeover=1` (our lt's --takeover): close the name's live client and take it.
TAKEOVER_PARAM = "takeover"
# Set on a refusal whose reason a client acts on; `taken-over`: this client was replaced
# by a takeover and must stop instead of registering again.
REFUSAL_HEADER = "X-Tunnelsite-Refusal"
REFUSAL_TAKEN_OVER = "taken-over"
# A name registered this recently whose client has not opened a pool socket yet still
# counts as held: its client is connecting (our lt and the npm client connect within
# milliseconds; 10 s leaves room for a slow link).
CONNECTING_S = 10.0
# How many replaced clients the relay remembers, and for how long, to tell them why
# (our lt asks again within its 30 s backoff cap; an hour covers a laptop's sleep).
TAKEN_OVER_MEMORY = 4096
TAKEN_OVER_TTL_S = 3600.0

# --- who may visit a tunnel (relay/pool/access.py, relay/proxy/gate.py, relay/visitor_pass.py) ---
# Our lt sends a tunnel's visitor rules with its registration in this header, as compact JSON:
# {"basic_auth": ["user:pass", ...], "cidr_allow": ["10.0.0.0/8", ...], "cidr_deny": [...],
#  "private": true}; every key optional. A header, not the query string: proxies and access
# logs keep URLs, and the passwords must never be written anywhere.
ACCESS_HEADER = "X-Tunnelsite-Access"
# Bounds on what a client may ask for (tunnels/access.py refuses more with a 400): the rules
# are kept per tunnel in memory and every CIDR is tested per request.
MAX_ACCESS_HEADER_BYTES = 8192  # inside the relay's head limit (DEFAULT_MAX_HEADER_BYTES)
MAX_BASIC_AUTH_USERS = 20
MAX_BASIC_AUTH_CHARS = 256  # one "user:pass"
MAX_CIDRS = 64  # allow and deny together, per source (client, plan, reserved name)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(
    texts: tuple[str, ...] | list[str], most: int | None = MAX_CIDRS
) -> tuple[Network, ...]:
    """The networks written in `texts` ("203.0.113.0/24", "2001:db8::/32", a bare address:
    its /32 or /128; host bits are cleared, blanks skipped), or ValueError naming the first
    that is not one, or saying there are more than `most` (None: no cap). The one parser of
    visitor CIDR rules: the relay's (relay/pool/access.py) and the site's (tunnels/cidrs.py,
    the admin's and lt's lists)."""
    networks = []
    for value in texts:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"{text!r} is not an address or network (examples: 203.0.113.0/24, "
                "2001:db8::/32, 198.51.100.7)"
            ) from None
    if most is not None and len(networks) > most:
        raise ValueError(f"at most {most} networks, not {len(networks)}")
    return tuple(networks)


# Paths the relay answers itself on a tunnel's host, before the app: the team-only sign-in's
# ticket exchange and the warning page's Continue. Under /.well-known/ (RFC 8615), where apps
# rarely serve anything.
VISITOR_PATH_PREFIX = "/.well-known/tunnelsite/"
TICKET_PATH = VISITOR_PATH_PREFIX + "ticket"  # GET ?ticket=<ticket>&next=<path>
CONTINUE_PATH = VISITOR_PATH_PREFIX + "continue"  # POST next=<path> (the warning page's form)
TICKET_PARAM = "ticket"
NEXT_PARAM = "next"
# Where a team-only tunnel sends a browser to sign in, on the bare domain (tunnels/views.py):
# GET ?tunnel=<name>&next=<path>; it answers with a redirect to TICKET_PATH on the tunnel.
TEAM_SIGNIN_PATH = "/visit/"
# And where the warning page's "Report abuse" goes, on the bare domain: GET ?tunnel=<name>.
ABUSE_REPORT_PATH = "/report/"
TUNNEL_PARAM = "tunnel"
# Cookies the relay sets on a tunnel's host (host-only, HttpOnly, SameSite=Lax, Secure on
# https); both are removed from the visitor's Cookie header before the app sees it, and the
# app cannot set them (its Set-Cookie for these names is dropped).
ACCESS_COOKIE = "tunnelsite_access"  # a team member's pass for this tunnel (signed)
WARNED_COOKIE = "tunnelsite_warned"  # the visitor saw the warning page (signed)
# On https both are named with this prefix (__Host-tunnelsite_access): browsers accept such a
# cookie only with Secure, Path=/ and no Domain, so a sibling tunnel's page cannot set one for
# another tunnel host (a Domain=.<relay domain> cookie). Over plain http the plain names.
HOST_COOKIE_PREFIX = "__Host-"
# A ticket is good once, for one tunnel name, for this long: the browser follows the bare
# domain's redirect at once, so a minute is plenty and a leaked ticket soon dies.
TICKET_MAX_AGE_S = 60
# When the spent tickets fill up with unexpired ones, every ticket is refused (forgetting one
# would let it be used twice): the refusal says so, and the log warns once per this many s.
FULL_MEMORY_WARNING_EVERY_S = 60.0
TICKETS_REMEMBERED = 100_000  # spent tickets kept (until they expire) so none is used twice
# Signed-out users whose older passes are refused (per relay, in memory, for a cookie's life).
SIGNED_OUT_REMEMBERED = 100_000
# As loca.lt: a request with this header never sees the warning page (scripts, webhooks).
BYPASS_WARNING_HEADER = b"bypass-tunnel-reminder"
INTERSTITIAL_CHOICES = ("anonymous", "all", "off")
# Why a registration is refused (REFUSAL_HEADER), for our lt's exit codes.
REFUSAL_DISCONNECTED = "disconnected"  # the operator disconnected it: cool-down
REFUSAL_SUSPENDED = "suspended"  # the name, token or user is suspended
# Disconnect cool-downs a relay keeps (names and owners together, relay/pool/sanctions.py):
# each lasts RELAY_DISCONNECT_COOLDOWN_S; past this many the oldest is dropped, so an
# operator disconnecting in bulk cannot grow the relay's memory without end.
COOLDOWNS_REMEMBERED = 10_000
# Suspended names a relay keeps in memory (each is an operator's Suspension row): the names
# beyond this are still refused at registration (from the database) but visitors get a 404.
SUSPENDED_NAMES_REMEMBERED = 100_000
# Status of a visitor's request to a suspended name: 451 "Unavailable For Legal Reasons"
# (RFC 7725) would claim a legal demand; 403 says only that the operator refuses it.
SUSPENDED_STATUS = 403
# What the relay signs for visitors (relay/visitor_pass.py): tickets, access and warned cookies.
# A signed value is "<payload>.<mac>", both base64url; anything longer is refused unread
# (a name of 63 characters, ids and times fit in well under 300).
MAX_PASS_CHARS = 512
PASS_NONCE_BYTES = 16  # a ticket's nonce: spent tickets are remembered by it
PASS_STAMPS_PER_S = 1000  # issued-at in ms: a sign-out and a new sign-in may share a second
PASS_MAC_BYTES = 32  # the whole HMAC-SHA256: no reason to shorten what guards a tunnel
# A CIDR decision per visitor address is cached on the tunnel's Access: one dict lookup per
# request instead of parsing the address and testing every network. Oldest dropped when full.
ACCESS_DECISIONS_CACHED = 4096
# A visitor's Bearer token for a team-only tunnel is checked in the database (Records
# .team_member) at most this often per token and tunnel: a revoked token or a user removed
# from the owner's group loses access within this many seconds, and a script's requests cost
# no query each.
TEAM_ANSWER_TTL_S = 30.0
# Answers kept per kind (yes and no apart, so a flood of wrong tokens cannot push out the
# right ones), each table dropping its oldest first when full.
TEAM_ANSWERS_CACHED = 4096
# A lookup that finds no one (a wrong token, a pass holder no longer on the team) is counted
# against the visitor's address key (IPv6 by the RELAY_IPV6_PREFIX setting): past this many in
# a window the address's unknown tokens get a 429 without a query, so a script sending random
# tokens cannot keep the relay's database threads (relay/database.py) busy.
TEAM_MISSES_PER_ADDRESS = 20
TEAM_MISS_WINDOW_S = 60.0
TEAM_MISS_ADDRESSES = 10_000  # addresses counted per window; the oldest dropped past it
# Lookups (team_member, team_user) in flight on the whole relay; past it a visitor gets a 503
# with Retry-After instead of queueing behind the registrations' database threads. Requests for
# one answer share one lookup, and wait for it at most TEAM_LOOKUP_WAIT_S.
TEAM_LOOKUPS_IN_FLIGHT = 32
TEAM_LOOKUP_WAIT_S = 5.0
TEAM_BUSY_RETRY_S = 5
# The largest Authorization header the gate decodes (a user:pass of MAX_BASIC_AUTH_CHARS in
# base64 with its scheme fits; a longer one is simply a wrong password).
MAX_AUTHORIZATION_CHARS = 1024
BASIC_AUTH_KEY_BYTES = 32  # the per-process HMAC key of basic-auth digests: SHA-256's block half
MAX_FORM_FIELDS = 8  # the fields read from a ticket's query or Continue's form; the rest ignored
MAX_NEXT_CHARS = 2048  # a ticket's or Continue's `next` path; longer: the visitor lands on /
OWNER_TAG_BYTES = 6  # a warned cookie's owner: 48 bits of a hash of the owner key, in the pass


# --- pool connections over the relay's own port (relay/pool/upgrade.py) ------------------------
# Our lt opens its pool connections as HTTP/1.1 Upgrade requests to the relay's public URL,
# over TLS when that URL is https and through whatever proxy is in front: no raw port for a
# firewall to block, and bound to the tunnel by a secret, not by the client's address (a laptop
# that changes networks keeps its tunnel). After the 101 the connection carries exactly what
# a raw pool socket carries. The registration answer gives our lt (CLIENT_ID_HEADER set) the
# URL and the secret:
#   {"id", "port", "max_conn_count", "url", "pool_url": "https://relay/api/tunnels/<id>/pool",
#    "pool_secret": "<64 hex digits>"}
#   GET /api/tunnels/<id>/pool HTTP/1.1
#   Connection: Upgrade
#   Upgrade: tunnelsite-pool
#   Tunnelsite-Pool-Secret: <64 hex digits>
# The answer is `101 Switching Protocols`, or a refusal with a JSON {"message"}: 401 (no or
# a wrong secret), 404 (no such tunnel here), 429 (max_conn_count connections already).
POOL_UPGRADE = "tunnelsite-pool"
POOL_SECRET_HEADER = "Tunnelsite-Pool-Secret"
POOL_PATH = "/api/tunnels/{name}/pool"
# 256 random bits: guessing one is out of the question however many tries a visitor makes.
POOL_SECRET_BYTES = 32
# Our lt asks for the upgraded pool with this header on its registration (`upgrade`); a client
# that sends CLIENT_ID_HEADER without it (an older lt, or `lt --raw-pool`) gets a raw pool
# port as before, so no client that worked stops working.
POOL_KIND_HEADER = "X-Tunnelsite-Pool"
POOL_KIND_UPGRADE = "upgrade"

# User-Agents of tunnel clients: they register with `GET /<name>`, so a site route of the
# same name must answer them the reserved-name refusal, not the route.
_TUNNEL_CLIENT_USER_AGENT = re.compile(rb"^(?:axios/|tunnelsite-lt/)")


def is_tunnel_client(user_agent: bytes) -> bool:
    return bool(_TUNNEL_CLIENT_USER_AGENT.match(user_agent))


# CPU per peer: the relay runs on one event loop, so the work one peer's bytes cause between
# two turns of the loop must be bounded, or a peer that sends many tiny units (1-byte
# chunks, 1-byte WebSocket messages: a Python event each) stalls every other visitor (a
# 1-byte-chunk stream took /healthz from 2 ms to 3.7 s). Bytes from a pool socket or a peer
# node are parsed at most PARSE_SLICE_BYTES at a time (h11 or wsproto), and the relay
# yields to the loop after EVENTS_PER_TURN parsed events (an h11 event costs ~4 us, so
# ~0.5 ms per turn) or WS_MESSAGES_PER_TURN WebSocket messages (each also goes through
# Daphne and autobahn, ~20-40 us).
PARSE_SLICE_BYTES = 64 * 1024
EVENTS_PER_TURN = 128
WS_MESSAGES_PER_TURN = 32

# A chunked request body from a visitor is parsed by Twisted in Python, chunk by chunk: a
# 30 MB body of 1-byte chunks is 5 million chunks, and took every request's latency to ~1 s.
# The relay hands Twisted a chunked body CHUNKED_SLICE_BYTES at a time (~1,400 1-byte chunks,
# a few ms) and, past the first CHUNK_FRAMING_FREE_BYTES, refuses with 400 a body whose
# chunk framing (sizes, extensions, CRLFs) is more than 1/MAX_CHUNK_FRAMING_SHARE of its
# bytes on the wire: chunks averaging under ~42 bytes. Real clients (curl, browsers, HTTP
# libraries) send KiBs per chunk; a short line per chunk still passes.
CHUNKED_SLICE_BYTES = 8 * 1024
CHUNK_FRAMING_FREE_BYTES = 16 * 1024
MAX_CHUNK_FRAMING_SHARE = 8


# --- TCP tunnels (relay/pool/tcp_*.py, client/tcp_*.py; docs/tcp.md) -----------------------------
# `lt tcp --port 5432` registers like any tunnel (`GET /?new` or `GET /<name>`, with our lt's
# CLIENT_ID_HEADER and the upgraded pool), plus TCP_KIND_HEADER: tcp, and, for a port the user
# has reserved (tunnels.models.ReservedTcpPort), TCP_REMOTE_PORT_HEADER: <port>. The answer adds
# "tcp_port", and its "url" is tcp://<RELAY_TCP_HOST>:<tcp_port>. Visitors connect to that port
# on this relay (a port of RELAY_TCP_PORTS, owned by the one node that registered the tunnel);
# the npm client never asks for TCP. HTTP visitors of a TCP tunnel's name are told it is TCP.
TCP_KIND_HEADER = "X-Tunnelsite-Kind"
TCP_KIND = "tcp"
TCP_REMOTE_PORT_HEADER = "X-Tunnelsite-Remote-Port"
# A TCP tunnel's pool connections (raw or upgraded, after the 101) carry frames, both ways:
#   kind (1 byte) | length (4 bytes, big-endian) | payload (length bytes)
# Why frames and not the raw bytes with a real FIN: half-close must pass through TLS and any
# proxy in front of the relay (asyncio's TLS cannot half-close, nginx closes both ways), and a
# connection whose every visitor ends with a frame on both sides can serve the next visitor
# (no reconnect, no handshake per visitor connection). One visitor connection at a time per
# pool connection, so TCP's own flow control on the pool connection is the backpressure.
#   OPEN  relay -> lt   a visitor connected; payload "<ip> <port>" (ASCII). lt dials its app.
#   DATA  both ways     bytes of the visitor connection, 1..TCP_MAX_DATA_BYTES of them.
#   EOF   both ways     the sender's side is done writing (a FIN), empty payload; the other
#                       direction goes on. After its EOF a side sends nothing more for the
#                       conversation (no DATA, no CLOSE: the other side may already have given
#                       the connection to the next visitor); lt whose app fails after that
#                       drops the relay's DATA until the relay's EOF. After EOF both ways the
#                       conversation is over and the pool connection waits for the next OPEN.
#   CLOSE both ways     the conversation ended abruptly (a reset, an app that refused, the
#                       idle timeout); payload: a reason in UTF-8, at most TCP_MAX_REASON_BYTES.
#                       Both ends then close the pool connection (lt opens a new one).
# Anything else (an unknown kind, an oversized or empty DATA frame, a control frame over its
# bound, bytes before OPEN or after the conversation ended) is a protocol error: the pool
# connection is closed at once, and the visitor connection with it.
TCP_OPEN = b"O"
TCP_DATA = b"D"
TCP_EOF = b"E"
TCP_CLOSE = b"C"
TCP_FRAME_HEADER_BYTES = 5
# A DATA frame's payload: 256 KiB amortises the 5-byte header (0.002%) and one parse per frame,
# and bounds what one frame holds in memory on either side.
TCP_MAX_DATA_BYTES = 256 * 1024
TCP_MAX_REASON_BYTES = 256  # a CLOSE's reason
TCP_MAX_OPEN_BYTES = 64  # an OPEN's "<ip> <port>": an IPv6 address and a port fit
# A visitor who connects while every pool connection is busy waits this long for one (the
# client opens more up to max_conn_count as visitors arrive), then is closed; at most
# DEFAULT_TCP_MAX_WAITERS per tunnel wait, past them a visitor is closed at once. A waiting
# visitor is not read (the kernel holds its early bytes), so it costs a socket, a transport
# and a timer: about 8 KiB (tests/tcp_relay/test_waiting_visitors.py), 512 of them 4 MiB a
# tunnel. 512 lets the connection pools of a few application servers (tens each) arrive at
# once while lt opens pool connections up to max_conn_count; one address holds at most
# RELAY_MAX_CONNECTIONS_PER_IP (256) of them, so it takes two to fill the queue.
DEFAULT_TCP_WAIT_S = 10.0
# A PROXY protocol v1 header (a TCP balancer's `send-proxy`, RELAY_TCP_PROXY_PROTOCOL) is at
# most this long, its CRLF included: the spec's own bound (haproxy.org proxy-protocol.txt,
# 2.1), so a line that has not ended by then is no header.
TCP_PROXY_HEADER_MAX_BYTES = 107
DEFAULT_TCP_MAX_WAITERS = 512
# A TCP visitor connection with no byte either way for this long is closed
# (RELAY_TCP_IDLE_TIMEOUT_S; 0: never): a database session sits idle for minutes, a forgotten
# one for ever. A peer that stops reading counts as idle too: a write that waits this long
# closes the connection.
DEFAULT_TCP_IDLE_TIMEOUT_S = 3600.0
# A TCP visitor listener's accept queue: 200 visitors connecting at once are all queued.
TCP_LISTEN_BACKLOG = 512
# Our lt keeps this many idle pool connections of a TCP tunnel open (and opens one more each
# time one starts carrying a visitor), up to max_conn_count; idle ones past it close after
# TCP_SPARE_IDLE_S, so a burst's connections do not stay open for ever.
TCP_SPARE_CONNECTIONS = 2
TCP_SPARE_IDLE_S = 30.0
TCP_URL_SCHEME = "tcp"
# lt's frames are parsed at most EVENTS_PER_TURN at a time (DATA pieces included), then the
# relay yields to the loop: a PARSE_SLICE_BYTES slice of one-byte DATA frames is ~10,900
# frames, and parsed in one go on a few connections it held the loop for tens of
# milliseconds a turn; a slice of big DATA frames is one or two events, still one turn.
# A TCP tunnel's port stays with its owner this long after the tunnel closed: no other owner
# (another user; anonymous: another address) gets it at random meanwhile, and the same name
# re-registered by the same user (lt after a relay restart) is given it back. A database
# client retries an address for about that long; one that reconnected to a port handed to a
# stranger would send it its startup packet and password (tunnels/tcp_ports.py).
TCP_PORT_QUARANTINE_S = 3600.0


# --- the request inspector (relay/pool/captures.py, relay/proxy/replay.py, tunnels/inspector.py) --
# The relay keeps, per tunnel whose plan allows it, the last RELAY_INSPECT_REQUESTS exchanges
# in memory: heads, the first RELAY_INSPECT_BODY_BYTES of each body, sizes and timing; all
# tunnels' captures together stay within RELAY_INSPECT_MEMORY_BYTES, the oldest dropped first.
# The owner reads them (and replays one) through the tunnel API, so on a cluster any node
# forwards the call to the owner node like the tunnel's status (relay/cluster/hop.py):
#   GET  /api/tunnels/<name>/requests?after=<id>      -> {"requests": [summary, ...]}, newest first
#   GET  /api/tunnels/<name>/requests/<id>            -> detail
#   POST /api/tunnels/<name>/requests/<id>/replay     -> detail of the new exchange
# summary: {"id", "at" (Unix s), "method", "path", "status" (null: no answer), "duration_ms",
#           "request_bytes", "response_bytes", "client_ip", "replay_of" (null or an id),
#           "error" ("" or why it failed)}
# detail: summary + {"request": {"headers": [[name, value], ...], "body_b64",
#           "body_truncated"}, "response": {"reason", "headers", "body_b64", "body_truncated"}}
# A replay's JSON body may edit {"method", "path", "headers": [[n, v], ...], "body_b64"}; the
# relay sends it on one of the tunnel's pool sockets, past the visitor gate (the owner asks),
# and captures the answer like any exchange.
INSPECT_PATH = "/api/tunnels/{name}/requests"
# Header values never kept in a capture, shown as REDACTED: credentials of the visitor and
# of the app. A replay leaves such headers out unless the owner types a value.
INSPECT_REDACTED_HEADERS = frozenset(
    {b"authorization", b"cookie", b"set-cookie", b"proxy-authorization"}
)
INSPECT_REDACTED = "[redacted]"
# A capture's fixed cost besides its kept bytes (the record, its lists, the JSON it becomes):
# counted against RELAY_INSPECT_MEMORY_BYTES so that many empty requests are bounded too.
INSPECT_RECORD_OVERHEAD_BYTES = 512
# Each kept header pair's fixed cost besides its bytes, so that a head of many short headers
# is counted as what it holds: h11 keeps a pair as a 3-tuple (64 bytes) of bytes objects (33
# bytes each before their data: the name as sent, lowercased, and the value) in a list (8
# bytes a slot): 171, rounded up; plus the bytes of each (relay/pool/captures.py `_size`).
INSPECT_HEADER_OVERHEAD_BYTES = 176
# A replay's edited headers: as many as a server accepts by default (Apache's
# LimitRequestFields is 100; h11 counts none, only bytes), so the owner can send back any
# real request's head, and the edits stay bounded before they are parsed (the head's bytes
# are then bounded by RELAY_MAX_HEADER_BYTES).
INSPECT_REPLAY_MAX_HEADERS = 100
# A replay's method: the longest in IANA's HTTP Method Registry is 17 characters
# (UPDATEREDIRECTREF); 32 leaves room for an app's own. A longer one is an edit gone wrong,
# refused with a 400 before it reaches the app, whose refusal (or closed connection) would
# read as the app's fault. The rest of an edit is bounded as a visitor's request is: the
# request line by RELAY_MAX_REQUEST_LINE_BYTES, the header lines together (names and
# values) by RELAY_MAX_HEADER_BYTES, their count by INSPECT_REPLAY_MAX_HEADERS, the body
# by RELAY_INSPECT_BODY_BYTES (what a capture keeps of one).
INSPECT_REPLAY_MAX_METHOD_BYTES = 32
# A header name quoted in a replay's refusal is cut to this many characters: enough to
# recognise it, while a 16 KiB name does not fill the message.
INSPECT_REPLAY_NAME_SHOWN_CHARS = 40
# Replays of one tunnel in flight at once; past it a 429 with Retry-After RETRY_AFTER_BUSY_S.
# A person replays one request at a time (4 leaves room for a few tabs or a script's
# retry). Each replay holds one of the tunnel's pool sockets (DEFAULT_MAX_SOCKETS, 10) and
# adds one capture to the RELAY_INSPECT_REQUESTS window (50): 200 at once took every socket
# from visitors and pushed the capture being replayed, and visitors' own, out of the window.
INSPECT_REPLAY_MAX_CONCURRENT = 4
# Replays a tunnel's window keeps among its RELAY_INSPECT_REQUESTS: past it a new replay
# pushes out the oldest replay, not a visitor's request. Whoever replays gets the answer
# at once (the API returns it), and the page shows the latest few; a burst of quick replays,
# which the bound in flight does not slow, had pushed the request being replayed and all
# of the visitors' out of the window (51 answered, then 149 x 404). Now a burst pushes out
# at most this many of them.
INSPECT_REPLAYS_KEPT = 10


def inspect_edits_max_bytes(body_bytes: int, header_bytes: int) -> int:
    """The most JSON a replay's edits may take (tunnels/inspect_api.py): a kept body of
    `body_bytes` (RELAY_INSPECT_BODY_BYTES) as base64, 4 bytes for each 3, plus a head of
    `header_bytes` (RELAY_MAX_HEADER_BYTES) twice over (JSON quoting and escaping at most
    doubles ordinary text) and 4 KiB for the keys and punctuation."""
    return 4 * -(-body_bytes // 3) + 2 * header_bytes + 4096


# A replay's answer is read by the relay, not streamed to anyone: its first
# RELAY_INSPECT_BODY_BYTES are kept and the rest counted, up to this, where the relay stops
# reading (the socket is discarded) and says so in the capture's error.
INSPECT_REPLAY_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# An API token's last_used is written at most this often (tunnels/auth.py): enough to show a
# token in use, leaked or not, without a database write per request that carries it.
TOKEN_TOUCH_INTERVAL_S = 60

# --- refused registrations in the log (tunnels/refusal_log.py) --------------------------------
# A refusal is a client's mistake that anyone can repeat at will (a wrong token in a loop, the
# npm client retrying for ever), so its log lines are rationed per window. Per address: a
# client's looping shows in its first lines, and one loop cannot take every other client's
# share. Per process: enough for every refusal a team's clients make in a bad minute, few
# enough that many addresses together cannot fill the log (about one line a second); it also
# bounds the addresses remembered in a window (only those logged are).
REFUSAL_LOG_WINDOW_S = 60.0
REFUSAL_LINES_PER_ADDRESS = 10
REFUSAL_LINES_PER_WINDOW = 60

# --- `lt login` in the browser: device authorization (RFC 8628; tunnels/device.py) ------------
# lt:   POST /api/device/code   {"client_name", "client_version"}
#       -> {"device_code", "user_code", "verification_uri", "verification_uri_complete",
#           "expires_in", "interval"}
# user: opens verification_uri(_complete) on the bare domain, signs in, sees the device's
#       name, version and address, and approves or denies.
# lt:   POST /api/device/token  {"device_code", "grant_type": DEVICE_GRANT_TYPE} every
#       `interval` s -> 200 {"access_token", "token_type": "Bearer", "name"} once approved;
#       else 400 {"error": DEVICE_PENDING | DEVICE_SLOW_DOWN | DEVICE_DENIED | DEVICE_EXPIRED
#       | "invalid_grant", "message"}. slow_down adds DEVICE_SLOW_DOWN_STEP_S to the interval.
DEVICE_CODE_PATH = "/api/device/code"
DEVICE_TOKEN_PATH = "/api/device/token"
DEVICE_VERIFY_PATH = "/account/device/"
DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_PENDING = "authorization_pending"
DEVICE_SLOW_DOWN = "slow_down"
DEVICE_DENIED = "access_denied"
DEVICE_EXPIRED = "expired_token"
DEVICE_SLOW_DOWN_STEP_S = 5  # RFC 8628 section 3.5
# The user code: 8 letters from an alphabet without vowels or look-alikes (RFC 8628 section
# 6.1's example: 20^8, ~2^34.6, against a few guesses a minute per signed-in user),
# shown as XXXX-XXXX.
DEVICE_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
DEVICE_USER_CODE_LENGTH = 8
DEVICE_CODE_BYTES = 32  # the device code lt polls with: a bearer secret, 256 bits
DEVICE_NAME_MAX_CHARS = 100  # the device's name as lt sends it (its host name), cut to this
DEVICE_VERSION_MAX_CHARS = 40

# === Limits and timeouts of the relay's parts, each with the reason for its value ==========

# --- visitor request bodies (relay/edge/server.py) ------------------------------------------------
# Request bodies are handed to the relay in pieces of this size, read from Twisted's spool
# (memory below 100 KB, a temporary file above) only when the relay asks for the next one.
BODY_CHUNK_BYTES = 256 * 1024
# A request to the site itself (the bare domain: account pages, the admin, the APIs) may
# carry a body of at most this; a larger one is answered 413 as soon as its head arrives,
# before any of it is read. The largest body a page of the site takes is a replay's edits
# (inspect_edits_max_bytes: ~121 KiB at the defaults; more when an operator raises
# RELAY_INSPECT_BODY_BYTES, so the limit grows with it), and Django refuses any body past its
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) anyway, but only once all of it had been received
# and spooled twice (Twisted's spool, then Django's): 100 MiB posted to any page took
# seconds of disk and, before Twisted's form parsing was turned off, 360 MB of memory.
SITE_MAX_BODY_BYTES = 1024 * 1024


def site_max_body_bytes(inspect_body_bytes: int, header_bytes: int) -> int:
    """The site's body limit: SITE_MAX_BODY_BYTES, or a replay's largest edits if larger."""
    return max(SITE_MAX_BODY_BYTES, inspect_edits_max_bytes(inspect_body_bytes, header_bytes))


# --- pool sockets (relay/pool/socket.py, relay/pool/backpressure.py) ------------------------------
# Stop reading the socket when this much response data waits for the visitor; resume
# below the low mark. 1 MiB keeps big downloads fast while bounding memory per socket.
READ_HIGH_WATER = 1024 * 1024
READ_LOW_WATER = 256 * 1024
# A Content-Length response body (relay/pool/wire.py's common case) passes from the inbox to
# the visitor in pieces of at most this: a transport read is at most 256 KiB (asyncio's and
# uvloop's read size), so a piece is usually one read as it arrived, passed on uncopied;
# the bound keeps it so if a loop reads more. h11's bodies go in PARSE_SLICE_BYTES slices.
POOL_BODY_PIECE_BYTES = 256 * 1024

# --- WebSockets (relay/proxy/websocket.py, relay/proxy/ws_flow.py) --------------------------------
MAX_MESSAGE_BYTES = 1024 * 1024  # the same bound Daphne puts on visitors' messages
MAX_REFUSAL_BYTES = 4096  # of the body of a refused handshake, read for its message
# What a queued message costs beyond its payload (its dict and the payload's object header):
# counted, so a flood of one-byte messages is bounded by memory too, not only by payload.
# Measured with tracemalloc: Daphne's {"type", "bytes"/"text"} dict of a tiny message, its
# payload object and the deque slot take 230-250 bytes.
MESSAGE_OVERHEAD_BYTES = 256

# --- one exchange (relay/proxy/exchange.py) -------------------------------------------------------
# Interim (1xx) answers skipped before the real response; an endless stream of them is a
# broken or hostile client, not a slow one.
MAX_INFORMATIONAL = 8

# --- the registry (relay/pool/registry.py and its parts: ports, flush, holders) -------------------
# Closed session rows past RELAY_SESSION_RETENTION_DAYS are deleted this many at a time (one
# short transaction per flush, however many piled up), checked at most every PRUNE_EVERY_S
# while nothing is left to delete.
PRUNE_BATCH = 500
PRUNE_EVERY_S = 3600.0
# Random pool ports tried before the whole range is listed and shuffled: with a
# mostly free range one of them binds, and a 60,000-port range is not copied per registration.
QUICK_PORT_TRIES = 16
# scale-out: reclaiming a name the same owner holds on another node. That node closes the
# tunnel and writes its row at once (milliseconds); the insert is retried every
# RECLAIM_POLL_S until then, and a node that does not answer costs the client 2 s and a 409.
RECLAIM_WAIT_S = 2.0
RECLAIM_POLL_S = 0.05

# --- plan quotas (relay/pool/quota.py) ------------------------------------------------------------
# A plan's windows are fixed, not sliding: requests per minute, bytes (in + out) per day.
MINUTE_S = 60.0
DAY_S = 86400.0
# Account quotas (relay/pool/usage.py): each account's counts go to the store (Redis, else the
# database) every RELAY_FLUSH_S, never per request. Redis keys start with this prefix and
# expire this long after their window ends: a node whose clock is a little late still finds
# them, and a day's keys do not outlive the next day by much.
USAGE_KEY_PREFIX = "tunnelsite:usage:"
USAGE_EXPIRY_SLACK_S = 120
# One batch (or one read at registration) of the usage store may take this long; past it the
# counts stay in memory for the next batch, and a registration starts from what is known.
USAGE_STORE_TIMEOUT_S = 2.0
# Usage windows older than this many days are deleted from the database (one statement per
# hour at most): only today's window is ever read.
USAGE_KEPT_DAYS = 2
# A WebSocket closed because its account's bytes ran out: the close frame (1008 and why) gets
# this long to reach the app before the pool socket is dropped.
WS_QUOTA_CLOSE_S = 2.0
# Visitor addresses whose key (an IPv6 network, a normalised IPv4) is remembered: a busy
# relay's visitors of the moment, at a few hundred KB.
VISITOR_KEYS_CACHED = 4096
# Registration buckets of owners that are full again are forgotten past this many owners
# (relay.pool.quota.RegistrationRate): a bound on memory, not a limit on anyone.
REGISTRATION_OWNERS_KEPT = 10_000

# Retry-After of a refusal that clears as tunnels or WebSockets close, not in a moment: no
# free pool port for a registration, a tunnel's WebSocket share taken.
RETRY_AFTER_FULL_S = 5
# Retry-After of a tunnel too busy for one more visitor (every pool socket in use, the waiting
# line full): a socket frees within a request's time.
RETRY_AFTER_BUSY_S = 1
# Retry-After of a tunnel whose client is not connected: the npm client reconnects within
# about RECONNECT_WAIT_S; ours within its first backoff step.
RETRY_AFTER_OFFLINE_S = 2
# A pool listener's accept queue: a client opens its sockets together at start (10 by
# default, RELAY_MAX_SOCKETS); 64 waiting connections hold several such bursts.
POOL_LISTEN_BACKLOG = 64
# Timers may fire a little early: a grace period this close to its end counts as over.
TIMER_SLACK_S = 0.01
# A close reason is stored in the session row, whose column holds this many characters
# (tunnels.models.TunnelSession.close_reason).
CLOSE_REASON_MAX_CHARS = 100

# --- a plan's bandwidth (relay/pool/bandwidth.py) ------------------------------------------------
# An owner's bucket holds at most one second's worth of its rate, and never less than one
# body piece (BODY_CHUNK_BYTES): a second is the unit the plan's limit is given in, so a
# quiet owner's next download starts at full speed for that second and no longer; below one
# body piece a small rate would make every piece wait even after a long pause.
BANDWIDTH_BURST_S = 1.0
BANDWIDTH_MIN_BURST_BYTES = BODY_CHUNK_BYTES
# A debt smaller than a byte is the rounding of float seconds times a rate, not traffic: it is
# kept in the bucket but not waited for (a timer per piece for nothing).
BANDWIDTH_DUST_BYTES = 1.0
# A copier waits on its bucket in steps of at most this long (relay/pool/bandwidth.py `wait`):
# after each step it looks again, so its tunnel's close lets it go within a step, and a new
# rate for its owner (a reclaim under another plan) or a limit gone applies to a wait under
# way. Four timers a second per waiting copier cost nothing next to the bytes they hold back.
BANDWIDTH_STEP_S = 0.25
# A plan's bandwidth, when it has one (0: none), is at least this many bytes per second: the
# admin's plan form and RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND refuse less, and a plan row
# below it (written before the check) is paced at it. A piece is taken whole (a body piece,
# BODY_CHUNK_BYTES; a WebSocket message, up to MAX_MESSAGE_BYTES), so at 1 B/s one piece would
# hold a pool socket for three days; at 16 KiB/s a body piece waits at most 16 s and the
# largest message 64 s.
BANDWIDTH_MIN_BYTES_PER_SECOND = 16 * 1024
# While a limit applies, a TCP visitor's read (up to 256 KiB, the event loop's) is passed on
# to lt in slices of this many seconds of the rate, each after its wait, so the bytes leave
# at the rate instead of in a burst per read; the rest of the read waits (no copy, a view of
# it), with the visitor unread meanwhile. The same step as the wait, for the same reason.
BANDWIDTH_SLICE_S = BANDWIDTH_STEP_S

# --- the control listener (relay/cluster/control.py) ----------------------------------------------
# Group membership expires (channels_redis group_expiry, a day by default; the in-memory layer
# the same): join again well before that, from a task beside the receive, never cancelling it.
REJOIN_S = 3600.0
# Longest wait between attempts to reach an unavailable channel layer.
RETRY_MAX_S = 30.0
# The first wait after a failed attempt (doubling up to RETRY_MAX_S): a layer that blinked
# (Redis restarting) is back within a second or two, and a relay must not spin on one down.
RETRY_FIRST_S = 1.0

# --- cluster membership (relay/cluster/node.py) --------------------------------------------
# One heartbeat (a row update and a directory read) gets RELAY_NODE_EXPIRY_S, and at least this:
# an expiry set very low must not turn a slow database write into a missed beat.
HEARTBEAT_MIN_TIMEOUT_S = 1.0
# Announcing a name's move to the other nodes is best effort (their next directory read tells
# them anyway): a channel layer that does not take it in this long is not waited for.
ANNOUNCE_TIMEOUT_S = 2.0
# At shutdown, the heartbeat task and the last announcements get this long to finish.
CLUSTER_STOP_S = 2.0

# --- peer nodes (relay/cluster/peer_pool.py, peer_proxy.py, hop.py) -------------------------------
MAX_IDLE_PER_PEER = 32  # kept-alive connections per peer; more are closed after use
# A peer node's response head: that node bounds the heads it passes on by its own
# RELAY_MAX_HEADER_BYTES (16 KiB by default); 64 KiB leaves room for one set higher and
# still bounds a broken peer.
PEER_MAX_HEAD_BYTES = 64 * 1024
# The owner node gives its tunnel RELAY_RESPONSE_TIMEOUT_S; the forwarding node waits this
# much longer, so the owner's own 504 (which names the tunnel) reaches the visitor first.
PEER_RESPONSE_MARGIN_S = 5.0
# A hop marker's signature: 160 bits of its HMAC-SHA256, far beyond guessing within
# HOP_MAX_AGE_S, in a short header.
HOP_SIGNATURE_HEX_CHARS = 40

# --- starting and stopping (relay/run/runner.py, relay/run/console.py) ----------------------------
START_TIMEOUT_S = 20.0  # scale-out: to start listening, and for the first heartbeat
# After SIGTERM/SIGINT the relay drains for RELAY_DRAIN_S, then closes its tunnels and
# flushes their counters: that last part gets this long before the relay stops regardless,
# and twice this long before the process exits even if its event loop is stuck.
STOP_MARGIN_S = 5.0
# How long Daphne lets an application instance finish after its visitor's connection closed.
APPLICATION_CLOSE_TIMEOUT_S = 5
# How long the bare domain's Django gets to end a view whose caller left (relay/site_call.py):
# it cancels the view as soon as it reads the disconnect, within milliseconds; this is well
# inside APPLICATION_CLOSE_TIMEOUT_S, so the relay, not Daphne, cancels one that does not.
SITE_DISCONNECT_WAIT_S = 2.0
# The public port's accept queue (and the redirect port's): connections the kernel has
# completed and the relay has not accepted yet. Twisted's default is 50; a burst beyond it
# (a page opening its assets on new connections, a load balancer's pool filling, many
# visitors at once while the loop is busy) had its SYNs dropped, and each such visitor waited
# for the retransmission, one second later: 300 connections at once to an idle relay, 15 of
# them over a second (tests/e2e/test_listen_backlog.py). nginx's default is 511, uvicorn's
# 2048; the kernel caps the figure at net.core.somaxconn (4096 since Linux 5.4). A queued
# connection costs the kernel a socket until it is accepted, nothing of the relay's.
PUBLIC_LISTEN_BACKLOG = 1024
# Start-up waits for Daphne to report where it listens (a few ms) in steps of this.
LISTEN_POLL_S = 0.01
# Output waiting for a slow reader: a few thousand lines, far more than a burst at start
# or stop, small enough to never matter for memory.
CONSOLE_BUFFER_BYTES = 256 * 1024
# The cyclic garbage collector's thresholds (gc.set_threshold), set once the start-up heap is
# frozen (relay/run/heap.py). A finished request leaves no cycle, a tunnel's or the site's
# (tests/sockets/test_request_cycles.py), so a young collection finds next to no garbage: it
# only walks what requests in flight hold, and moves it on to the older generations, to be
# walked again there. Python's first threshold, 700 objects, is a fraction of what 200
# requests in flight hold (twenty tunnels loaded at once, ten visitors each): measured there
# (gc.callbacks in the relay, 1 KiB, ~70,000 requests), 3,000 young collections and 275 of
# the middle generation took 16 us of the relay's CPU per request, about 7%; at 10,000,
# 260 and 23 took 2 us, and a young collection 0.15 ms. The cost of the larger first
# threshold is garbage that waits longer: only a page's own cycles now (a template's
# context, a form, a 404's exception), and the churn test's relay grew 5.4 MB against 5.0
# MB at 700 (before the site's requests stopped leaving cycles, 14 MB against 8).
GC_THRESHOLDS = (10_000, 10, 10)
# At exit, how long the last lines (the "stopped" line, a start error) may take to go out
# to a reader that is slow; a reader that never reads does not hold the exit longer.
EXIT_FLUSH_S = 2.0

# --- the dashboard's traffic (relay/traffic.py) ---------------------------------------------------
SAMPLE_S = 1.0  # how often the sampler reads the counters: cheap, a sum over live tunnels
RATE_WINDOW_S = 5.0  # rates are averaged over this much recent history, so they do not jitter
HISTORY_MINUTES = 60  # the ring buffer of per-minute totals: one hour
# The minutes' rows (TrafficMinute, tunnels/traffic_rows.py): the dashboard shows an hour; a
# day of rows (1440 per node) lets a restarted or newly joined node's dashboard, and an
# operator with SQL, look back further at no real cost. Pruned when a minute ends, at most this
# often, so a relay's writes stay one small transaction.
MINUTE_ROWS_KEEP_S = 24 * 3600
MINUTE_ROWS_PRUNE_EVERY_S = 600.0


# === Defaults of the RELAY_* settings (tunnelsite/settings.py reads each from here) =======
# Pool sockets a client may open: the localtunnel reference server's max_conn_count, so
# the npm client behaves as it does against it.
DEFAULT_MAX_SOCKETS = 10
# Live tunnels per relay: each holds a pool listener and up to DEFAULT_MAX_SOCKETS sockets,
# so 5000 stay within a raised open-file limit of 65536 descriptors.
DEFAULT_MAX_TUNNELS = 5000
# A name waits this long for its client after its last pool socket closed: both clients
# reconnect within seconds, and 15 s rides out a brief network change.
DEFAULT_GRACE_S = 15.0
# A visitor waits this long for a free pool socket (then 504): far longer than a busy
# tunnel's sockets take to turn over, shorter than a visitor's patience.
DEFAULT_SOCKET_WAIT_S = 10.0
# Visitors queued per tunnel while all its pool sockets are busy. A waiter is a future and a
# timer (well under 1 KB) beside a visitor connection the relay holds anyway, and waits at
# most RELAY_SOCKET_WAIT_S; 100 turned a burst of 200 requests on 10 sockets into 55-73
# immediate 503s. 1000 carries such bursts and still bounds a flood on one tunnel.
DEFAULT_MAX_WAITERS = 1000
# The local app's time to answer, per wait for more bytes: the usual reverse-proxy value
# (nginx's proxy_read_timeout is 60 s).
DEFAULT_RESPONSE_TIMEOUT_S = 60.0
# A request head (and a response head from a tunnel): 16 KiB, as Node's default
# max-http-header-size; real heads are a few hundred bytes, big cookies a few KiB.
DEFAULT_MAX_HEADER_BYTES = 16384
# Header lines per request: Apache's LimitRequestFields default.
DEFAULT_MAX_HEADER_COUNT = 100
# The request line: Apache's LimitRequestLine is 8190; browsers cap URLs lower.
DEFAULT_MAX_REQUEST_LINE_BYTES = 8192
# Request bodies are spooled to disk before they are forwarded: bound them (0: no limit).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024 * 1024
# A visitor must send a whole request head within this (slowloris), and a keep-alive
# connection with nothing to do is closed after the idle time.
DEFAULT_HEADER_TIMEOUT_S = 10.0
# A keep-alive connection with nothing to do is closed after this (see above): browsers
# reuse a connection within seconds or not at all.
DEFAULT_IDLE_TIMEOUT_S = 30.0
# A request body must arrive within RELAY_BODY_TIMEOUT_S, extended by one second for every
# RELAY_BODY_MIN_RATE_BYTES_S bytes received (Apache's RequestReadTimeout body=20,MinRate=500):
# any real upload keeps far above that pace, while one byte every 15 s, which the idle
# timeout lets through, is answered 408 after 20 s.
DEFAULT_BODY_TIMEOUT_S = 20.0
# The pace a request body must keep after DEFAULT_BODY_TIMEOUT_S (see there).
DEFAULT_BODY_MIN_RATE_BYTES_S = 500
# ...but the deadline never runs more than this ahead of now (Apache's body=20-40): without a
# cap, 10 MB sent fast bought 5.8 h in which one byte every 20 s held the connection and its
# spooled body. 40 s is twice RELAY_BODY_TIMEOUT_S: a real upload that pauses that long is dead.
DEFAULT_BODY_MAX_AHEAD_S = 40.0
# Open public connections one visitor address may hold (each can also hold a spooled body,
# a second descriptor): one address must not exhaust the relay's descriptors. Browsers
# open 6 per host; 256 leaves room for NAT-shared offices and load tests. Connections from
# RELAY_TRUSTED_PROXIES are not counted (every visitor behind them shares their address).
# 0: no limit.
DEFAULT_MAX_CONNECTIONS_PER_IP = 256
# After SIGTERM, requests in flight get this long to finish: well inside the 30 s that
# systemd and Kubernetes give before SIGKILL.
DEFAULT_DRAIN_S = 10.0
# WebSockets (relay/proxy/websocket.py). Daphne queues every message a visitor sends and buffers
# every message sent to a visitor without limit; past this many bytes waiting for a slow
# peer, the relay stops reading the sender (resumes below half). 2 MiB: two of the largest
# messages (1 MiB) in flight keep a fast stream moving; a flood costs this much, not more.
DEFAULT_WS_BUFFER_BYTES = 2 * 1024 * 1024
# WebSockets one visitor address may keep open to one tunnel, so one visitor cannot hold
# all of the sockets DEFAULT_SPARE_SOCKETS leaves to WebSockets.
DEFAULT_WS_MAX_PER_VISITOR = 4
# Counters reach the database in batches this often: the admin's numbers stay fresh and
# a tunnel costs at most one row update per flush.
DEFAULT_FLUSH_S = 5.0
# scale-out: a node writes its row this often; three missed beats make it dead
# (DEFAULT_NODE_EXPIRY_S).
DEFAULT_HEARTBEAT_S = 2.0
# A node silent for this long is dead: any live node closes its sessions ("node gone").
DEFAULT_NODE_EXPIRY_S = 6.0
# How long a request forwarded to the owning node may take to connect.
DEFAULT_PEER_CONNECT_S = 2.0
# Registrations per owner (token user, or anonymous address): a token bucket of BURST that
# refills at PER_MINUTE. A developer restarts a client a few times a minute at most, and
# our lt's reconnect backoff (0.5 s doubling to 30 s) stays far below; a loop of
# `GET /?new` + DELETE is held to one row every 6 s. PER_MINUTE=0: no limit.
DEFAULT_REGISTRATION_BURST = 20
# The pace the registration bucket refills at (see DEFAULT_REGISTRATION_BURST).
DEFAULT_REGISTRATIONS_PER_MINUTE = 10.0
# Closed session rows older than this are deleted (in batches, by the relay's flusher): the
# admin's session list and a month of history need no more. 0: keep them for ever.
DEFAULT_SESSION_RETENTION_DAYS = 30
# The relay's ORM calls from the event loop run on threads of its own, each keeping its
# connection (relay/database.py). SQLite takes one writer at a time: one thread, so the relay's
# writes never wait on each other's lock (registrations each on a thread and a connection of
# their own slept in SQLite's busy handler, and past its timeout failed "database busy"). A
# database server: a few, so one slow query (statement_timeout: 10 s) holds up no more than
# its thread; each holds one connection for the relay's life.
DATABASE_THREADS_SQLITE = 1
DATABASE_THREADS_SERVER = 4
# How long a call may wait for a database thread before it is dropped and its caller told
# the database is busy (a registration: 503): the threads may be held by a locked SQLite (5 s
# per statement) or a slow server (statement_timeout: 10 s), and the calls queued behind
# them must not wait out each one in turn. A registration waits at most this plus one
# call's own time (on a locked SQLite: 5 + 5 s).
DATABASE_QUEUE_WAIT_S = 5.0
# A registration for a name whose last registration was abandoned (its client left) while its
# session row was being written waits for that write, at most this long (the queue's wait and
# one statement on a server: statement_timeout 10 s), so a row written after all is closed
# before the new one's: the reconnecting client once met a 409, "in use", from its own row.
ABANDONED_ROW_WAIT_S = DATABASE_QUEUE_WAIT_S + 10.0
# After a call fails with an OperationalError (locked, timed out, unreachable), the calls the
# database threads take during this long fail at once ("database busy") instead of each
# waiting out the same lock; the first one after it tries the database again.
DATABASE_SHED_S = 1.0
# An IPv6 client counts as its /64 (one home or server gets a whole /64, so per-address
# limits are per network) wherever an address owns tunnels or is limited. 128: per address.
DEFAULT_IPV6_PREFIX = 64
# Pool sockets of each tunnel kept for others (relay/pool/tunnel.py): one visitor address may
# hold all of a tunnel's sockets but this many (ten slow downloads from one address held all
# ten, and every other visitor got 504), and WebSockets, which browsers keep open idle for
# ever, all but this many too, so plain requests always find one (a tunnel with fewer
# sockets still serves one of each). RELAY_WS_SPARE_SOCKETS, its former name, still works.
DEFAULT_SPARE_SOCKETS = 2
# Visitor access: how long a team member's pass (ACCESS_COOKIE) lasts; signing out on the
# bare domain ends it at once on running relays, this bounds a pass a restarted relay honours.
DEFAULT_VISITOR_COOKIE_MAX_AGE_S = 3600
# How long the warning page's Continue lasts on a tunnel host.
DEFAULT_WARNED_COOKIE_MAX_AGE_S = 86400
# After the admin's Disconnect, the name (and its owner's registrations) are refused this long:
# the npm client re-registers at once and forever, our lt after its backoff.
DEFAULT_DISCONNECT_COOLDOWN_S = 60.0
# The inspector (relay/pool/captures.py): exchanges kept per tunnel, the bytes of each body
# kept, and the bound for every tunnel's captures together. 50 exchanges of small webhooks are a few
# hundred KB; 64 KiB shows any JSON or form body whole; 64 MiB bounds the worst case (1,000
# tunnels x 50 exchanges x 128 KiB would be 6 GB) at a small share of a relay's memory.
DEFAULT_INSPECT_REQUESTS = 50
DEFAULT_INSPECT_BODY_BYTES = 64 * 1024
DEFAULT_INSPECT_MEMORY_BYTES = 64 * 1024 * 1024
# `lt login` in the browser: a device code lives 10 minutes (RFC 8628's example is 30 min;
# the user is at the same desk) and lt polls every 5 s (the RFC's default).
DEFAULT_DEVICE_CODE_TTL_S = 600
DEFAULT_DEVICE_POLL_INTERVAL_S = 5
DEFAULT_INTERSTITIAL = "anonymous"
