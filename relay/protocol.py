"""The localtunnel wire protocol, as tunnelsite speaks it. Everything the npm client and
our own client depend on lives here: the subdomain rule, the registration answer, the
headers a proxy must not forward, and how errors reach clients that cannot read statuses.
"""

from __future__ import annotations

import re
import secrets

# The reference server's id rule: 4-63 alphanumerics, or 6-65 characters with inner
# hyphens. Kept as is so every name the npm client accepts is accepted here.
SUBDOMAIN_RE = re.compile(r"^(?:[a-z0-9][a-z0-9\-]{4,63}[a-z0-9]|[a-z0-9]{4,63})$")

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
    return bool(SUBDOMAIN_RE.match(name))


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


def public_url(scheme: str, name: str, domain: str, port: int) -> str:
    return relay_url(scheme, f"{name}.{domain}", port)


def lt_command(relay: str, token: str) -> str:
    """The command that opens a tunnel with `token` (in --token, never in the URL, where
    it would show in every line that prints the relay's address)."""
    return f"lt --port 3000 --host {relay} --token {token}"


def registration_answer(
    name: str, port: int, max_conn_count: int, url: str, ip: str | None = None
) -> dict[str, object]:
    """The JSON body of a successful `GET /?new` or `GET /<name>`."""
    answer: dict[str, object] = {
        "id": name,
        "port": port,
        "max_conn_count": max_conn_count,
        "url": url,
    }
    if ip:
        answer["ip"] = ip
    return answer


def tunnel_name_from_host(host: bytes, domain: bytes) -> str | None:
    """`quiet-fox.localhost:8080` -> `quiet-fox` when domain is `localhost`; else None.

    Only one label below the domain counts: `a.b.localhost` is not a tunnel.
    """
    host = host.split(b":", 1)[0].lower().rstrip(b".")
    if not host.endswith(b"." + domain):
        return None
    label = host[: -len(domain) - 1]
    if not label or b"." in label:
        return None
    try:
        return label.decode("ascii")
    except UnicodeDecodeError:
        return None


# --- between cluster nodes (relay/cluster/hop.py) -------------------------------------------
# The signed marker a node adds to a request it forwards to the tunnel's owner node.
HOP_HEADER = b"x-tunnelsite-hop"
# A marker older (or newer) than this is refused: it bounds replays of a captured one, and
# a minute is far more than any forward takes or any two nodes' clocks should disagree.
HOP_MAX_AGE_S = 60
# Set in the scope of a request that arrived from a peer node with a valid marker.
HOP_SCOPE_KEY = "tunnelsite.hop"


# --- the admin's channel ------------------------------------------------------------------
# The channel-layer group every relay listens on for control messages (relay/cluster/control.py):
# `tunnel.close` from the admin (relay.face.close_message), `tunnel.owner` and
# `tunnel.release` between cluster nodes.
CONTROL_GROUP = "relay-control"


# --- who holds a name (issue 10 item 5) ---------------------------------------------------
# Our lt sends a random id per run in this header, so a re-registration after it lost its
# pool sockets is known as the same client reconnecting (the relay may not have seen those
# sockets close yet), not as a second client fighting for the name.
CLIENT_ID_HEADER = "X-Tunnelsite-Client"
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
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

# User-Agents of tunnel clients: they register with `GET /<name>`, so a site route of the
# same name must answer them the reserved-name refusal, not the route (item 6).
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
