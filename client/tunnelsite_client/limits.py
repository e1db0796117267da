"""Every limit, timeout, buffer size and backoff bound of the `lt` client, with its reason.

The one place to read or change a number the client lives by (as h11 keeps
`max_incomplete_event_size` and bore its `NETWORK_TIMEOUT` in one protocol module). Other
client modules import from here; tests/structure/test_client_limits_live_in_limits.py fails
on a numeric literal anywhere else in `client/` that its allow-list does not explain.
"""

from __future__ import annotations

import re

# Binary units for the sizes below.
KIB = 1024
MIB = 1024 * KIB

# -- the subdomain rule ----------------------------------------------------------------
# The relay's rule (relay/protocol.py): 4-63 lowercase alphanumerics, or 6-63 characters
# with inner hyphens (one DNS label), matched whole. Checked before registering so a bad
# name fails fast with a usage error; tests/structure/test_subdomain_rule.py pins it to the
# relay's on arbitrary text.
SUBDOMAIN_MIN_CHARS = 4
SUBDOMAIN_MIN_CHARS_WITH_HYPHEN = 6
SUBDOMAIN_MAX_CHARS = 63
SUBDOMAIN_RE = re.compile(
    rf"[a-z0-9][a-z0-9-]{{{SUBDOMAIN_MIN_CHARS_WITH_HYPHEN - 2},{SUBDOMAIN_MAX_CHARS - 2}}}"
    rf"[a-z0-9]|[a-z0-9]{{{SUBDOMAIN_MIN_CHARS},{SUBDOMAIN_MAX_CHARS}}}"
)
# The rule in words, as the relay says it (relay.protocol.SUBDOMAIN_RULE; the structure
# test pins the two).
SUBDOMAIN_RULE = (
    f"a tunnel name is {SUBDOMAIN_MIN_CHARS} to {SUBDOMAIN_MAX_CHARS} lowercase letters "
    f"and digits; hyphens may go inside (not first or last) when the name has at least "
    f"{SUBDOMAIN_MIN_CHARS_WITH_HYPHEN} characters"
)

# -- registration (the relay's small JSON API) -----------------------------------------
# Registration is a small JSON call; a relay that cannot answer in this time is "down".
REGISTER_TIMEOUT_S = 10.0
# Releasing the name on exit must never hold up Ctrl-C for long.
RELEASE_TIMEOUT_S = 2.0
# Registration answers are a few hundred bytes; anything past this is not our relay.
API_MAX_BODY_BYTES = 1 * MIB
# Read size for the API's answers: one read takes any registration answer whole.
API_READ_CHUNK_BYTES = 64 * KIB
# Sockets opened whatever `max_conn_count` says: bounds file descriptors and memory
# (the reference relay asks for 10).
MAX_POOL_SOCKETS = 100
# Random bytes of the per-run client id (registration.CLIENT_ID_HEADER): 128 bits, so two
# clients never draw the same one.
CLIENT_ID_BYTES = 16

# -- `lt login` in the browser (device_login.py; RFC 8628) -----------------------------
# Each call (asking for a code, one poll) is a small JSON call, as registration is.
DEVICE_REQUEST_TIMEOUT_S = 10.0
# The poll interval lt accepts from the relay: at least 1 s (a relay's 0 would make lt
# poll in a busy loop), at most 60 s (a longer one would leave the user waiting after
# approving); RFC 8628 section 3.5's slow_down adds 5 s each time.
DEVICE_MIN_INTERVAL_S = 1
DEVICE_MAX_INTERVAL_S = 60
DEVICE_SLOW_DOWN_STEP_S = 5
# How long lt waits for the approval whatever the relay's expires_in says: a deadline
# that is a relay's typo (or a hostile relay's) does not keep lt polling for days.
DEVICE_MAX_WAIT_S = 3600
# The codes lt prints as it got them, cut to this length (a user code is 9 characters; a
# hostile relay's screenful is not printed).
DEVICE_SHOWN_CHARS = 200

# -- who may visit the tunnel (access.py: --basic-auth, --cidr-allow, --cidr-deny) -------
# The relay's bounds (relay/protocol.py; tests/structure/test_client_access_limits.py pins
# these copies to them): a bad or oversized rule is a usage error here, not a 400 there.
# Rules are kept per tunnel in the relay's memory and every CIDR is tested per request.
MAX_BASIC_AUTH_USERS = 20
MAX_BASIC_AUTH_CHARS = 256  # one "user:pass"
MAX_CIDRS = 64  # --cidr-allow and --cidr-deny together
# The X-Tunnelsite-Access header whole, inside the relay's head limit.
MAX_ACCESS_HEADER_BYTES = 8192
# A refused rule is quoted in the usage error up to this many characters (a user name, a
# CIDR typo): enough to recognise it, never a screenful.
SHOWN_VALUE_CHARS = 60

# -- a forward proxy (connect.py, HTTPS_PROXY) -----------------------------------------
# Reaching the proxy, and its answer to CONNECT, each within this time: a proxy that takes
# longer is dead or overloaded (the caller's own deadline bounds the whole dial too).
PROXY_CONNECT_TIMEOUT_S = 10.0
# A CONNECT answer is a status line and a few headers; a head past this is not a proxy.
# asyncio's own stream limit, so the connection's reader, which goes on to carry the relay's
# traffic, is bounded exactly as a direct connection's is.
PROXY_MAX_HEAD_BYTES = 64 * KIB

# -- registering again (tunnel.py) -----------------------------------------------------
# First retry after 0.5-1 s: a restarting relay is often back at once.
FIRST_DELAY_S = 0.5
# Never wait longer than this between two attempts.
MAX_DELAY_S = 30.0
# Doublings past this change nothing (the cap is long reached) and keep 2**n a small number.
MAX_BACKOFF_DOUBLINGS = 32

# -- the pool sockets (pool.py) --------------------------------------------------------
# A relay that does not accept a pool connection in this time counts as unreachable.
POOL_CONNECT_TIMEOUT_S = 5.0
# An upgraded pool connection (pool_upgrade.py): the relay's answer head to the upgrade (a
# 101 is a few dozen bytes, a refusal a few hundred), and a refusal's JSON body, read for
# its message; both within POOL_CONNECT_TIMEOUT_S.
POOL_UPGRADE_MAX_HEAD_BYTES = 16 * KIB
POOL_REFUSAL_MAX_BODY_BYTES = 4 * KIB
# The pool secret of the registration answer: 256 bits as hex (the relay's POOL_SECRET_BYTES).
POOL_SECRET_HEX_CHARS = 64
# A socket that closes sooner than this without carrying a request "closed at once".
QUICK_CLOSE_S = 1.0
# Reopen delay after quick closes: doubles from the first value up to the cap.
FIRST_REOPEN_DELAY_S = 0.1
MAX_REOPEN_DELAY_S = 5.0
# This many failed connects (or quick closes) in a row with no socket up: relay gone.
FAILURES_BEFORE_BROKEN = 3
# This many failed connects in a row, even with other sockets up: the relay is gone too
# (its pool port no longer answers, whatever the sockets still open say).
MAX_CONNECT_FAILURES = 10
# TCP keepalive so an idle pool socket notices a dead network in about a minute
# (30 s idle, then 3 probes 10 s apart).
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_COUNT = 3

# -- one exchange on a pool socket (exchange.py) ---------------------------------------
# Read size on both sides: big enough for throughput, small enough to bound memory.
CHUNK_BYTES = 128 * KIB
# Header size limits. The relay enforces its own (16 KiB) before adding X-Forwarded-*;
# we stay lenient so a request the relay accepted is never refused here. Local apps
# sometimes send big cookies.
POOL_MAX_HEADER_BYTES = 64 * KIB
LOCAL_MAX_HEADER_BYTES = 64 * KIB
# A local app that does not accept a connection in this time counts as down (502).
LOCAL_CONNECT_TIMEOUT_S = 5.0
# Longest silence from the local app (waiting for the answer, or between body chunks)
# before the visitor gets a 504; long enough for slow pages and long polling.
LOCAL_IDLE_TIMEOUT_S = 300.0
# Longest silence from the relay in the middle of a request body.
POOL_IDLE_TIMEOUT_S = 60.0
# An answer slower than this gets a task that watches the pool socket, so a relay that
# gives up is noticed at once; faster answers (nearly all) are awaited inline.
WATCH_POOL_AFTER_S = 0.1
# Body bytes kept while a request may have to be sent again on a fresh connection (the
# kept one turned out dead). A bigger upload on a dead connection is a 502. At least two
# pool reads, so a body that arrived with its head is always kept.
REPLAY_MAX_BYTES = 2 * CHUNK_BYTES
# Interim (1xx) answers passed on before the real one; more is a broken or hostile app (the
# relay gives up after as many: relay/protocol.py MAX_INFORMATIONAL).
MAX_INFORMATIONAL = 8

# -- the connection to the local app (local_tls.py) ------------------------------------
# Stop reading from a TLS app past this many unread bytes; resume below the low mark.
READ_HIGH_WATER_BYTES = 256 * KIB
READ_LOW_WATER_BYTES = 64 * KIB

# -- the library (library.py) ----------------------------------------------------------
# How long open_tunnel waits for a working URL before giving up.
OPEN_TIMEOUT_S = 30.0
# How long closing waits for the pool to stop (the DELETE has its own RELEASE_TIMEOUT_S).
CLOSE_TIMEOUT_S = 5.0
# SyncTunnel.close() waits this much longer than CLOSE_TIMEOUT_S for its thread: time for
# the DELETE and the loop's own shutdown.
THREAD_JOIN_GRACE_S = 5.0

# -- what lt prints (redact.py, display.py) --------------------------------------------
# Exact secrets shorter than this are masked only where a pattern finds them (inside a
# URL's user-info): masking every "ab" in a message would garble it.
MIN_EXACT_SECRET = 4
# The live status block redraws this often: counters look live, the terminal stays calm.
DISPLAY_REFRESHES_PER_S = 4
# How often a pool connection checks that its local address is still this machine's: a
# laptop that moves (Wi-Fi to tethering) loses the address its connections were made from,
# and those connections die without a sound (nothing can reach either end), while TCP
# keepalive would notice only after a minute. A check is one bind(2), no traffic.
LOCAL_ADDRESS_CHECK_S = 0.5

# -- TCP tunnels (`lt tcp`; tcp_frames.py, the relay's relay/protocol.py "TCP tunnels") ----
# The frames on a TCP tunnel's pool connection: kind (1 byte), length (4 bytes), payload.
# tests/structure pins these to the relay's.
TCP_OPEN = b"O"
TCP_DATA = b"D"
TCP_EOF = b"E"
TCP_CLOSE = b"C"
TCP_FRAME_HEADER_BYTES = 5
TCP_MAX_DATA_BYTES = 256 * KIB  # one DATA frame's payload
TCP_MAX_REASON_BYTES = 256  # a CLOSE's reason
TCP_MAX_OPEN_BYTES = 64  # an OPEN's "<ip> <port>"
# Idle pool connections kept open for visitors to come (one more opened each time one starts
# carrying a visitor, up to max_conn_count); idle ones past these close after TCP_SPARE_IDLE_S.
TCP_SPARE_CONNECTIONS = 2
TCP_SPARE_IDLE_S = 30.0
# What lt reads from the app at a time to send on as DATA: small enough that a visitor's
# connection moves in steps, large enough that one frame header per read costs nothing.
TCP_APP_READ_BYTES = 64 * KIB
# While the app takes no bytes, lt checks this often whether the relay reset the pool
# connection (its idle timeout): lt is not reading it then, so nothing else would notice, and
# the conversation would hold one of max_conn_count connections for ever. One check a second
# costs nothing; a stalled app's connection is freed within a second of the relay giving up.
TCP_STALL_CHECK_S = 1.0
# How long lt waits for a CLOSE to leave for the relay before it closes the pool connection
# anyway: a relay that stopped reading would otherwise hold the connection (and its worker)
# for ever. A CLOSE is a few bytes behind at most a buffer's worth; 5 s is plenty on any link.
TCP_CLOSE_SEND_S = 5.0
# The highest TCP port: --port and --remote-port are 1 to this.
HIGHEST_PORT = 65535

# Sizes as people read them (sizes.py), the relay's rule (tunnels/sizes.py; a structure test pins
# the two): binary units, one decimal below this many units, whole units from it (`2.9 MiB`,
# `977 KiB`): two or three significant figures, never `976.562 KiB`.
SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB")
SIZE_ONE_DECIMAL_BELOW = 10

# Text from the relay that lt shows (a refusal's message, a reached limit, a plan's name) is cut
# to this many characters (printable.py): a sentence or two is shown whole, a hostile relay's
# screenful is not.
RELAY_TEXT_SHOWN_CHARS = 1000

# While the account's plan has limits, lt asks the relay every this many seconds whether one is
# reached (GET /api/tunnels/<name>/status, one small request), to print it: a reached limit
# lasts until the minute or the day ends, so seeing it within 10 s is soon enough, and a
# tunnel costs the relay one request per 10 s at most. Each ask gets STATUS_TIMEOUT_S.
LIMIT_POLL_S = 10.0
STATUS_TIMEOUT_S = 5.0
