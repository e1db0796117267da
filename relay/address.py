"""The settings that follow from where the relay listens and which domain it serves.

`tunnelsite/settings.py` computes them from RELAY_DOMAIN, RELAY_BIND and RELAY_PORT;
`runrelay` again from its --domain, --bind and --port flags, with the same function, so a
flag and its environment variable configure the same thing (before, `--domain D` routed
tunnels at `*.D` while ALLOWED_HOSTS still named the default domain, and the bare domain
answered 400). It imports nothing from Django or the rest of the relay: settings.py imports
it before Django is set up.
A value the operator set explicitly (ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS, RELAY_POOL_BIND,
RELAY_TCP_BIND, RELAY_TCP_HOST) is kept as given.
"""

from __future__ import annotations

from typing import Any


def address_settings(
    *,
    domain: str,
    bind: str,
    port: int,
    public_port: int,
    scheme: str,
    explicit: dict[str, Any],
) -> dict[str, Any]:
    """RELAY_DOMAIN, RELAY_BIND, RELAY_PORT and what depends on them."""
    pool_bind = explicit.get("RELAY_POOL_BIND") or bind
    # TCP tunnels' ports listen where the public side does, and their tcp:// URLs name the
    # domain (`runrelay --bind 0.0.0.0 --domain tunnels.example` moves them with it).
    tcp_bind = explicit.get("RELAY_TCP_BIND") or bind
    tcp_host = explicit.get("RELAY_TCP_HOST") or domain
    allowed_hosts = explicit.get("ALLOWED_HOSTS")
    if allowed_hosts is None:
        # Only the bare domain reaches Django (`<name>.<domain>` goes to the relay first).
        allowed_hosts = [domain, "127.0.0.1"]
    origins = explicit.get("CSRF_TRUSTED_ORIGINS")
    if origins is None:
        # Behind a TLS proxy Django sees http: trust the origin visitors use for the admin.
        visible_port = public_port or port
        admin_origin = f"https://{domain}" + ("" if visible_port == 443 else f":{visible_port}")
        origins = [admin_origin] if scheme == "https" else []
    return {
        "RELAY_DOMAIN": domain,
        "RELAY_BIND": bind,
        "RELAY_PORT": port,
        "RELAY_POOL_BIND": pool_bind,
        "RELAY_TCP_BIND": tcp_bind,
        "RELAY_TCP_HOST": tcp_host,
        "ALLOWED_HOSTS": list(allowed_hosts),
        "CSRF_TRUSTED_ORIGINS": list(origins),
    }


def apply(settings: Any, *, domain: str, bind: str, port: int) -> None:
    """Set the address settings on Django's `settings` for these values (runrelay's flags)."""
    values = address_settings(
        domain=domain,
        bind=bind,
        port=port,
        public_port=settings.RELAY_PUBLIC_PORT,
        scheme=settings.RELAY_PUBLIC_SCHEME,
        explicit=settings.RELAY_EXPLICIT_SETTINGS,
    )
    for name, value in values.items():
        setattr(settings, name, value)


def apply_https(settings: Any) -> None:
    """runrelay was given a certificate by flag (--tls-cert): make visitors' side https as
    RELAY_TLS_CERT would have at start (tunnelsite/settings.py), keeping what the operator
    set explicitly. Call `apply` after it: the admin's CSRF origin follows the scheme."""
    explicit = settings.RELAY_EXPLICIT_HTTPS_SETTINGS
    if not explicit.get("RELAY_PUBLIC_SCHEME"):
        settings.RELAY_PUBLIC_SCHEME = "https"
    https = settings.RELAY_PUBLIC_SCHEME == "https"
    for cookie in ("SESSION", "CSRF"):
        if not explicit.get(f"{cookie}_COOKIE_SECURE"):
            setattr(settings, f"{cookie}_COOKIE_SECURE", https)
        if not explicit.get(f"{cookie}_COOKIE_NAME"):
            base = "sessionid" if cookie == "SESSION" else "csrftoken"
            secure = getattr(settings, f"{cookie}_COOKIE_SECURE")
            setattr(settings, f"{cookie}_COOKIE_NAME", f"__Host-{base}" if secure else base)
