"""What lasts: accounts, plans, API tokens, reserved names, and one row per tunnel session."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from relay.protocol import BANDWIDTH_MIN_BYTES_PER_SECOND
from tunnels import cidrs, tokens
from tunnels.plain_text import plain


class VisitorPolicy(models.Model):
    """Who may visit tunnels, as an operator sets it on a plan or a reserved name. Clients may
    tighten it (lt --basic-auth, --cidr-allow/--cidr-deny, --private), never loosen it
    (tunnels/access.py combines them)."""

    AUTH_CLIENT = ""
    AUTH_REQUIRED = "required"
    AUTH_TEAM = "team"
    AUTH_CHOICES = [
        (AUTH_CLIENT, "The client's choice"),
        (AUTH_REQUIRED, "Required: a password (lt --basic-auth) or the team's sign-in"),
        (AUTH_TEAM, "Team only: visitors sign in with an account of the owner's team"),
    ]
    WARNING_DEFAULT = ""
    WARNING_ON = "on"
    WARNING_OFF = "off"
    WARNING_CHOICES = [
        (WARNING_DEFAULT, "As the relay's RELAY_INTERSTITIAL says"),
        (WARNING_ON, "Show it"),
        (WARNING_OFF, "Never show it"),
    ]

    visitor_auth = models.CharField(
        max_length=10,
        choices=AUTH_CHOICES,
        default=AUTH_CLIENT,
        blank=True,
        help_text="Whether visitors must authenticate. With 'Required', a tunnel whose client "
        "sets no password becomes team only (the npm client cannot set one).",
    )
    cidr_allow = models.TextField(
        blank=True,
        validators=[cidrs.validate_lines],
        help_text="One network per line (203.0.113.0/24, 2001:db8::/32). When any is given, "
        "visitors must come from one of them.",
    )
    cidr_deny = models.TextField(
        blank=True,
        validators=[cidrs.validate_lines],
        help_text="One network per line. Visitors from these are refused.",
    )
    warning_page = models.CharField(
        max_length=5,
        choices=WARNING_CHOICES,
        default=WARNING_DEFAULT,
        blank=True,
        help_text="The page that tells a browser whose tunnel this is before the app.",
    )

    class Meta:
        abstract = True


def validate_bandwidth(value: int) -> None:
    """A plan's bandwidth: 0 (no limit) or at least BANDWIDTH_MIN_BYTES_PER_SECOND (its reason
    in relay/protocol.py: a piece waited for whole must not hold a pool socket for days)."""
    if 0 < value < BANDWIDTH_MIN_BYTES_PER_SECOND:
        raise ValidationError(
            f"A bandwidth of {value} bytes per second is too low: use 0 for no limit, or at "
            f"least {BANDWIDTH_MIN_BYTES_PER_SECOND} (16 KiB/s), so that one body piece or "
            "WebSocket message does not hold a tunnel's connection for minutes or days."
        )


# What a plan's name may hold besides letters and digits (any script's).
PLAN_NAME_PUNCTUATION = " -_."


def validate_plan_name(value: str) -> None:
    """A plan's name is shown to users: by our lt (`limits: ... (plan Free, ...)`, in a
    terminal), in refusals and on the account page. Letters, digits, spaces and `-_.`, no
    leading or trailing space: no control, escape or bidi character can ride along."""
    bad = sorted({ch for ch in value if not (ch.isalnum() or ch in PLAN_NAME_PUNCTUATION)})
    if bad or value != value.strip():
        shown = ", ".join(ascii(ch) for ch in bad) or "a leading or trailing space"
        raise ValidationError(
            f"A plan's name may hold letters, digits, spaces and - _ . only, with no space "
            f"first or last ({shown} found): it is shown to users, in lt's terminal too."
        )


class Plan(VisitorPolicy):
    """What a user may do. 0 means "no limit" for every limit but the socket count."""

    name = models.CharField(max_length=60, unique=True, validators=[validate_plan_name])
    max_live_tunnels = models.PositiveIntegerField(default=5)
    max_sockets_per_tunnel = models.PositiveIntegerField(
        default=10, help_text="Advertised to clients as max_conn_count."
    )
    max_requests_per_minute = models.PositiveIntegerField(
        default=0,
        help_text="Per account (anonymous: per address), all its tunnels and all nodes "
        "together, HTTP requests, WebSockets and TCP connections. 0: no limit.",
    )
    max_bytes_per_day = models.PositiveBigIntegerField(
        default=0,
        help_text="Bytes in plus out per UTC day, per account (anonymous: per address), all its "
        "tunnels and nodes together: HTTP bodies, WebSocket messages, TCP bytes. 0: no limit.",
    )
    max_bytes_per_second = models.PositiveBigIntegerField(
        "bandwidth (bytes per second)",
        default=0,
        help_text="Per account on each relay, in each direction; faster traffic waits, none is "
        f"dropped. 0: no limit; else at least {BANDWIDTH_MIN_BYTES_PER_SECOND} (16 KiB/s).",
        validators=[validate_bandwidth],
    )
    max_request_body_bytes = models.PositiveBigIntegerField(default=0, help_text="0: no limit.")
    idle_timeout_s = models.PositiveIntegerField(
        default=0, help_text="Close a tunnel after this long without requests. 0: never."
    )
    allow_custom_subdomains = models.BooleanField(default=True)
    max_reserved_names = models.PositiveIntegerField(
        default=1,
        help_text="Names a user may reserve for themselves on the account page. "
        "0: none (operators still reserve names in the admin).",
    )
    inspect_requests = models.BooleanField(
        default=True,
        help_text="Keep each tunnel's last requests in the relay's memory for its owner's "
        "inspector and replay. Off for privacy: nothing of the traffic is kept.",
    )
    allow_tcp = models.BooleanField(
        "allow TCP tunnels",
        default=True,
        help_text="Its users may open TCP tunnels (lt tcp) on relays that offer them "
        "(RELAY_TCP_PORTS).",
    )
    max_tcp_tunnels = models.PositiveIntegerField(
        "max TCP tunnels",
        default=2,
        help_text="Live TCP tunnels per user; they count toward the live tunnels too. 0: no limit.",
    )

    class Meta(VisitorPolicy.Meta):
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Account(models.Model):
    """A user's relay settings: for now, the plan (none: the default plan from settings)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="relay_account"
    )
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return f"{self.user} ({self.plan or 'default plan'})"


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def usable(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires__isnull=True) | Q(expires__gt=now)
        )


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, help_text="What or who it is for.")
    prefix = models.CharField(max_length=tokens.PREFIX_LENGTH, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    key_fingerprint = models.CharField(
        max_length=tokens.KEY_FINGERPRINT_LENGTH,
        blank=True,
        editable=False,
        help_text="Names the SECRET_KEY the token was made under (not the key). "
        "Empty for tokens made before it was recorded.",
    )
    plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Overrides the user's plan for tunnels opened with this token.",
    )
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    expires = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        label = self.name or "token"
        return f"{label} (lt_{self.prefix}…)"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Every way a name comes in (the account page, the admin, createtoken, lt login's
        # device name) is made plain here: no controls, no bidi overrides (plain_text.py).
        self.name = plain(self.name)
        super().save(*args, **kwargs)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and self.expires <= (now or timezone.now())

    @classmethod
    def issue(
        cls,
        user: User,
        name: str = "",
        expires_in: timedelta | None = None,
        plan: Plan | None = None,
    ) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the token text (the only time it exists)."""
        token = cls(user=user, name=name, plan=plan)
        if expires_in is not None:
            token.expires = timezone.now() + expires_in
        return token, token.set_new_secret()

    def set_new_secret(self) -> str:
        """Fill prefix and digest, save, and return the token text. Retries a prefix clash."""
        for _ in range(5):
            prefix, secret = tokens.new_prefix(), tokens.new_secret()
            self.prefix, self.digest = prefix, tokens.digest(secret)
            self.key_fingerprint = tokens.key_fingerprint()
            try:
                with transaction.atomic():
                    self.save()
            except IntegrityError:
                if not ApiToken.objects.filter(prefix=prefix).exclude(pk=self.pk).exists():
                    raise  # not a prefix clash
                continue
            return tokens.join(prefix, secret)
        raise IntegrityError("could not find a free token prefix")

    def revoke(self) -> bool:
        """Revoke now; False when it already was."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])
        return True


class ReservedSubdomain(VisitorPolicy):
    """A name kept for one user (or, with no user, for the operator: nobody may register it)."""

    name = models.CharField(max_length=65, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="reserved_subdomains",
        help_text="Empty: reserved for the operator, nobody may register it.",
    )
    note = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta(VisitorPolicy.Meta):
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: object, **kwargs: object) -> None:
        self.name = self.name.strip().lower()
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class ReservedTcpPort(models.Model):
    """A public TCP port kept for one user's TCP tunnels (`lt tcp --remote-port N`), or, with
    no user, for nobody. A reserved port is never handed to anyone else's tunnel."""

    port = models.PositiveIntegerField(
        unique=True, help_text="A port of the relay's RELAY_TCP_PORTS (on a cluster, of a node's)."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="reserved_tcp_ports",
        help_text="Empty: reserved for the operator, no tunnel gets it.",
    )
    note = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["port"]
        verbose_name = "reserved TCP port"

    def __str__(self) -> str:
        return str(self.port)


class TunnelSession(models.Model):
    """One registration of a tunnel, from its opening to its closing (relay.pool.tunnel.Tunnel is
    the live tunnel in the relay's memory; it writes this row through relay.records)."""

    subdomain = models.CharField(max_length=65, db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tunnel_sessions",
        help_text="Empty for anonymous tunnels.",
    )
    token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    node = models.CharField(max_length=100, blank=True, help_text="The relay that served it.")
    client_ip = models.GenericIPAddressField()
    port = models.PositiveIntegerField(help_text="The pool port the client connects to.")
    max_sockets = models.PositiveIntegerField()
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=100, blank=True)
    is_live = models.BooleanField(default=True, db_index=True)
    sockets = models.PositiveIntegerField(default=0, help_text="Pool sockets up now.")
    peak_sockets = models.PositiveIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    bytes_in = models.BigIntegerField(default=0, help_text="Bytes from visitors.")
    bytes_out = models.BigIntegerField(default=0, help_text="Bytes to visitors.")
    last_activity = models.DateTimeField(null=True, blank=True)
    tcp_port = models.PositiveIntegerField(
        "TCP port",
        null=True,
        blank=True,
        help_text="A TCP tunnel's public port (tcp://host:port); empty for HTTP tunnels.",
    )

    class Meta:
        # The table keeps the name it had while the model was called Tunnel: a relay of the
        # previous version still writes it during a rolling upgrade (migration 0005).
        db_table = "tunnels_tunnel"
        ordering = ["-opened_at"]
        constraints = [
            # One live tunnel per name: the database, not a check-then-insert, decides.
            models.UniqueConstraint(
                fields=["subdomain"], condition=Q(is_live=True), name="one_live_tunnel_per_name"
            )
        ]
        indexes = [
            # TCP registrations ask which ports of the range other owners had lately
            # (tunnels/tcp_ports.py's quarantine): only TCP rows, by port, in the index.
            models.Index(
                fields=["tcp_port", "-opened_at"],
                condition=Q(tcp_port__isnull=False),
                name="tunnelsession_tcp_port",
            )
        ]

    def __str__(self) -> str:
        return self.subdomain


class DeviceAuthorization(models.Model):
    """`lt login` in the browser (RFC 8628, tunnels/device.py): a device code lt polls with
    (kept as its digest), the short user code the user types or follows, and what the user
    decided. The token is made when lt collects it, so its secret is never stored."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    DONE = "done"  # lt has collected its token
    STATE_CHOICES = [
        (PENDING, "Waiting for the user"),
        (APPROVED, "Approved"),
        (DENIED, "Denied"),
        (DONE, "Token collected"),
    ]

    device_digest = models.CharField(max_length=64, unique=True, editable=False)
    user_code = models.CharField(max_length=16, db_index=True)
    device_name = models.CharField(max_length=100, blank=True)
    client_version = models.CharField(max_length=40, blank=True)
    client_ip = models.GenericIPAddressField()
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    interval_s = models.PositiveIntegerField()
    last_poll = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=8, choices=STATE_CHOICES, default=PENDING)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="device_authorizations",
    )
    token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.device_name or 'device'} ({self.user_code}, {self.state})"


class SuspensionQuerySet(models.QuerySet["Suspension"]):
    def active(self) -> SuspensionQuerySet:
        return self.filter(lifted_at__isnull=True)


class Suspension(models.Model):
    """An operator's suspension of a tunnel name, a token or a user, until lifted: their live
    tunnels close, their registrations are refused with the reason, and visitors of the names
    in `names` see a page with it (tunnels/suspensions.py; the admin's actions make these)."""

    NAME = "name"
    TOKEN = "token"
    USER = "user"
    KIND_CHOICES = [(NAME, "Tunnel name"), (TOKEN, "API token"), (USER, "User")]

    kind = models.CharField(max_length=5, choices=KIND_CHOICES)
    name = models.CharField(max_length=65, blank=True, db_index=True)
    token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.CASCADE, related_name="suspensions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="suspensions",
    )
    reason = models.CharField(max_length=200, help_text="Shown to the client and to visitors.")
    names = models.JSONField(
        default=list,
        blank=True,
        help_text="Tunnel names whose visitors see the suspension page: the name, or the "
        "names the token's or user's tunnels had when suspended.",
    )
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = SuspensionQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        target = self.name or (str(self.token) if self.token_id else str(self.user))
        return f"{self.get_kind_display()} {target}"

    @property
    def active(self) -> bool:
        return self.lifted_at is None


class AbuseReport(models.Model):
    """A visitor's report of a tunnel, from the warning page's "Report abuse"."""

    tunnel = models.CharField(max_length=65, db_index=True)
    url = models.CharField(max_length=2000, blank=True, help_text="The page reported.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The tunnel's owner when reported (empty: anonymous or not live).",
    )
    owner_address = models.GenericIPAddressField(
        null=True, blank=True, help_text="The tunnel client's address when reported."
    )
    note = models.TextField(max_length=2000, blank=True)
    reporter_address = models.GenericIPAddressField()
    created = models.DateTimeField(auto_now_add=True)
    handled = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.tunnel} ({self.created:%Y-%m-%d %H:%M})"


# --- scale-out --------------------------------------------------------------------------------
class UsageWindow(models.Model):
    """An account's use in one window (requests in a minute, bytes in a UTC day), every node
    together. The relays add to it in batches (relay/pool/usage.py), never per request, when
    no Redis is configured (with Redis, counters with expiry there); read back at start, so a
    restart does not reset a quota."""

    MINUTE, DAY = "minute", "day"

    owner = models.CharField(max_length=80, help_text="user:<id>, or addr:<address> (anonymous)")
    window = models.CharField(max_length=8, choices=[(MINUTE, MINUTE), (DAY, DAY)])
    start = models.DateTimeField(help_text="When the window began (UTC).")
    requests = models.PositiveBigIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "window", "start"], name="one_usage_window")
        ]
        indexes = [models.Index(fields=["start"], name="usage_window_start")]

    def __str__(self) -> str:
        return f"{self.owner} {self.window} {self.start:%Y-%m-%d %H:%M}"


class TrafficMinute(models.Model):
    """One node's traffic in one minute, for the dashboard's hour chart across all nodes and
    restarts (relay/traffic.py writes them in batches)."""

    node = models.CharField(max_length=100, blank=True, help_text="Empty: a single relay.")
    start = models.DateTimeField(db_index=True)
    requests = models.PositiveBigIntegerField(default=0)
    bytes_in = models.PositiveBigIntegerField(default=0)
    bytes_out = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "start"], name="one_traffic_minute")]

    def __str__(self) -> str:
        return f"{self.node or 'relay'} {self.start:%Y-%m-%d %H:%M}"


class Node(models.Model):
    """One relay process of several (relay/cluster/node.py): where peers reach it, whether it is
    alive (heartbeat), and its load, written with every heartbeat."""

    name = models.CharField(max_length=100, unique=True)
    advertise = models.CharField(
        max_length=300, help_text="HOST:PORT of its public listener, as peers reach it."
    )
    started_at = models.DateTimeField()
    last_heartbeat = models.DateTimeField(db_index=True)
    draining = models.BooleanField(default=False)
    tunnels = models.PositiveIntegerField(default=0, help_text="Live tunnels it owns.")
    sockets = models.PositiveIntegerField(default=0, help_text="Pool sockets connected.")
    in_flight = models.PositiveIntegerField(default=0, help_text="Requests being served now.")
    requests = models.BigIntegerField(default=0, help_text="Requests to its own tunnels.")
    forwarded = models.BigIntegerField(default=0, help_text="Requests it passed to peers.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# --- end scale-out ----------------------------------------------------------------------------
