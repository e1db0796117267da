"""`lt`: the command line, compatible with the npm localtunnel client.

    lt --port 3000 [--host URL] [--subdomain NAME] [--local-host HOST] [--local-https
       --local-cert F --local-key F --local-ca F] [--allow-invalid-cert]
       [--print-requests] [--open] [--token T] [--takeover] [--no-local-keepalive]
       [--ca FILE] [--insecure] [--raw-pool] [--basic-auth USER[:PASS]]...
       [--cidr-allow CIDR]... [--cidr-deny CIDR]... [--private]
    lt login --host URL [--token [T]] [--no-browser] [--ca FILE] [--insecure]
    lt logout
    lt tcp --port 5432 [--host URL] [--token T] [--remote-port N] [--local-host H]
       [--raw-pool] [--ca FILE] [--insecure] [--cidr-allow CIDR]... [--cidr-deny CIDR]...
       [--print-requests]      (a TCP tunnel: client/tunnelsite_client/tcp_arguments.py)

Like the npm client (yargs `.env(true)`), every flag can also come from an environment
variable named after it: PORT, HOST, SUBDOMAIN, LOCAL_HOST, LOCAL_HTTPS, ... A flag on
the command line wins over the variable. The token comes from --token, LT_TOKEN, or the
saved login (only sent to the host it was saved for), never over plain http to a host that
is not loopback without --insecure. HTTPS_PROXY / HTTP_PROXY (and NO_PROXY) send lt through
a forward proxy with CONNECT (client/tunnelsite_client/connect.py).

Exit codes: 0 stopped by Ctrl-C/SIGTERM; 1 other failure; 2 usage error; 3 the relay
answered 401 (bad or missing token); 4 403 (forbidden, e.g. invalid name); 5 409 (the
name is taken); 6 429 (too many tunnels or requests); 7 another client took the name
over (--takeover) and this one stopped; 8 the relay's operator disconnected the tunnel
(its name is refused for a cool-down); 9 the operator suspended the name, token or user
(the relay's message says why). The visitor rules are usage errors (2) when bad, here or
at the relay (a 400 to a registration that carried them). A relay that cannot be reached
safely at the first registration (its certificate refused, or the proxy's CONNECT refused
with a 4xx) is exit 1 with the reason ("lt: cannot reach the relay: ..."), not retried.

`lt login --host URL` without a token signs in in the browser (RFC 8628's device flow,
client/tunnelsite_client/device_login.py): it prints a URL and a code, opens the browser (not with
--no-browser), and saves the token the relay gives once the user approves. Its own exit
codes: 10 the user denied it; 11 the code expired first; 12 the relay does not offer it
(404/405: use --token); 130 Ctrl-C (nothing saved); 6 the relay's rate limit (429); 1 the
relay cannot be reached; 2 usage (a plain http relay that is not loopback, without
--insecure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from . import __version__
from .arguments import (
    BASIC_AUTH_ENV,
    TOKEN_ENV,
    Settings,
    UsageError,
    check_ca,
    check_host,
    parse_settings,
)
from .config import Login, delete_login, login_path, save_login
from .connect import INSECURE_WARNING, RelayConnector, plain_http_token_refusal, proxy_secrets
from .device_login import DeviceLoginError, login_in_browser
from .display import LiveDisplay, PlainDisplay
from .event_loop import run as run_on_loop
from .printable import printable
from .redact import redact, redact_url, secrets_of
from .registration import USER_AGENT
from .tcp_arguments import parse_tcp_settings
from .tunnel import CannotConnect, ClientTunnel, TunnelError, WrongRelay

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CODES = {401: 3, 403: 4, 409: 5, 429: 6}
EXIT_TAKEN_OVER = 7  # another client took the name with --takeover: this one stopped
EXIT_DISCONNECTED = 8  # the relay's operator disconnected the tunnel (a cool-down follows)
EXIT_SUSPENDED = 9  # the relay's operator suspended the name, token or user
# `lt login` in the browser (device_login.py):
EXIT_DENIED = 10  # the user pressed Deny on the account page
EXIT_EXPIRED = 11  # the code expired before anyone approved it
EXIT_UNSUPPORTED = 12  # the relay has no device flow (404/405): use --token
EXIT_INTERRUPTED = 130  # Ctrl-C before the approval: nothing saved (128 + SIGINT, as shells)
DEVICE_EXIT_CODES = {
    DeviceLoginError.DENIED: EXIT_DENIED,
    DeviceLoginError.EXPIRED: EXIT_EXPIRED,
    DeviceLoginError.UNSUPPORTED: EXIT_UNSUPPORTED,
    DeviceLoginError.UNREACHABLE: EXIT_FAILURE,
}
# `lt login --token` with no value: ask for the token on the terminal (kept out of `ps`).
ASK_TOKEN = "\0ask"


def exit_code_for(status: int) -> int:
    """The exit code for a registration refused with HTTP `status`."""
    return EXIT_CODES.get(status, EXIT_FAILURE)


def login_command(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lt login",
        description="Save a relay host and token. Without --token (and LT_TOKEN), sign in "
        "in the browser: lt prints a URL and a code, you approve on the relay's account "
        "page, and lt saves the token it gets.",
    )
    parser.add_argument("--host", required=True, help="relay URL, e.g. https://relay.example")
    parser.add_argument(
        "--token",
        nargs="?",
        const=ASK_TOKEN,
        help=f"access token (default: {TOKEN_ENV}; --token alone asks for it on the "
        "terminal; neither: sign in in the browser)",
    )
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="sign in in the browser, but only print the URL and the code (open them on "
        "any device)",
    )
    parser.add_argument(
        "--ca", metavar="FILE", help="verify the relay's certificate against this CA file"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a token for a plain http:// relay that is not loopback (and, signing in "
        "in the browser, do not verify the relay's certificate)",
    )
    args = parser.parse_args(list(argv))
    try:
        host = check_host(args.host)
        check_ca(args.ca, "--ca")
        connector = RelayConnector.from_environment(environ, args.ca, args.insecure)
    except (UsageError, ValueError) as exc:
        print(f"lt login: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # A login is a token for this host: refused before it is asked for, sent or saved.
    refusal = plain_http_token_refusal(host, "(the token to save)", args.insecure, connector)
    if refusal:
        print(f"lt login: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    token = args.token or environ.get(TOKEN_ENV)
    if token == ASK_TOKEN:
        token = getpass.getpass("token: ").strip() if sys.stdin.isatty() else ""
        if not token:
            print("lt login: no token typed (--token alone asks on a terminal)", file=sys.stderr)
            return EXIT_USAGE
    if not token:
        return browser_login(host, connector, args.no_browser, environ)
    path = save_login(Login(host=host, token=token))
    print(f"saved the login for {redact_url(host)} in {path}")
    return EXIT_OK


def browser_login(
    host: str, connector: RelayConnector, no_browser: bool, environ: Mapping[str, str]
) -> int:
    """`lt login` in the browser (device_login.py); the exit codes of the module docstring."""
    if connector.insecure:
        print(INSECURE_WARNING, file=sys.stderr)
    # asyncio.run turns SIGINT into a clean stop only when SIGINT has Python's default
    # handler: lt started with it ignored (from a script, in the background, by a CI runner)
    # would wait for the approval through every Ctrl-C. `lt` and `lt tcp` stop whatever they
    # inherited (their loop's handler); so does the login.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        granted = asyncio.run(
            login_in_browser(
                host,
                connector,
                __version__,
                USER_AGENT,
                lambda line: print(printable(line, None), flush=True),
                browser=not no_browser,
                environ=environ,
            )
        )
    except KeyboardInterrupt:
        print("lt login: stopped; nothing was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DeviceLoginError as exc:
        unreachable = exc.kind == DeviceLoginError.UNREACHABLE
        prefix = "cannot reach the relay: " if unreachable else ""
        print(f"lt login: {prefix}{printable(exc.message)}", file=sys.stderr)
        if exc.kind == DeviceLoginError.REFUSED:
            return exit_code_for(exc.status)
        return DEVICE_EXIT_CODES.get(exc.kind, EXIT_FAILURE)
    finally:
        signal.signal(signal.SIGINT, previous)
    path = save_login(Login(host=host, token=granted.token))
    print(f"logged in to {redact_url(host)} as token {granted.name}")
    print(f"saved the login in {path}")
    return EXIT_OK


def logout_command() -> int:
    if delete_login():
        print(f"removed the saved login ({login_path()})")
    else:
        print("no saved login")
    return EXIT_OK


async def run_tunnel(settings: Settings, display: PlainDisplay) -> int:
    tunnel = ClientTunnel(settings.options, display)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still ends it
            loop.add_signal_handler(signum, tunnel.stop)
    display.start(tunnel.status)
    try:
        await tunnel.run()
    except TunnelError as exc:
        display.stop()
        message = printable(redact(exc.message, tunnel.secrets))  # the relay's text
        if isinstance(exc, WrongRelay):
            print(f"lt: {message}", file=sys.stderr)
            return EXIT_FAILURE
        if isinstance(exc, CannotConnect):
            print(f"lt: cannot reach the relay: {message}", file=sys.stderr)
            return EXIT_FAILURE
        if exc.taken_over:
            print(f"lt: stopped: {message}", file=sys.stderr)
            return EXIT_TAKEN_OVER
        if exc.disconnected:
            print(f"lt: disconnected by the operator: {message}", file=sys.stderr)
            return EXIT_DISCONNECTED
        if exc.suspended:
            print(f"lt: {message}", file=sys.stderr)
            return EXIT_SUSPENDED
        if exc.rules_refused:
            print(f"lt: the relay refused the visitor rules: {message}", file=sys.stderr)
            return EXIT_USAGE
        print(f"lt: the relay refused the tunnel: {message}", file=sys.stderr)
        return exit_code_for(exc.status)
    finally:
        display.stop()
    status = await tunnel.release()
    if tunnel.registration is not None:
        freed = "released" if status is not None and status < 300 else "closed"
        display.event(f"tunnel {tunnel.registration.id} {freed}")
    return EXIT_OK


def _token_argument(argv: Sequence[str]) -> str | None:
    """The --token value on a command line that may not parse (to mask it in the error)."""
    for index, arg in enumerate(argv):
        if arg.startswith("--token="):
            return arg.split("=", 1)[1]
        if arg in ("-t", "--token") and index + 1 < len(argv):
            return argv[index + 1]
    return None


def _password_arguments(argv: Sequence[str], environ: Mapping[str, str]) -> set[str]:
    """Every USER:PASS and PASS that may be on a command line that does not parse, or in
    LT_BASIC_AUTH (to mask them in the error). Any argument with a colon after something
    that looks like --basic-auth counts, misspelt flags included."""
    found: set[str] = set()
    candidates = environ.get(BASIC_AUTH_ENV, "").split("\n")
    for index, arg in enumerate(argv):
        flag, _, inline = arg.partition("=")
        if flag.startswith("--b") and inline:
            candidates.append(inline)
        elif flag.startswith("--b") and index + 1 < len(argv):
            candidates.append(argv[index + 1])
    for value in candidates:
        if ":" in value:
            found.update({value, value.split(":", 1)[1]})
    return found


def _ask_password(prompt: str) -> str:
    return getpass.getpass(prompt)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ
    if argv[:1] == ["login"]:
        return login_command(argv[1:], environ)
    if argv[:1] == ["logout"]:
        return logout_command()
    try:
        ask = _ask_password if sys.stdin is not None and sys.stdin.isatty() else None
        if argv[:1] == ["tcp"]:
            settings = parse_tcp_settings(argv[1:], environ)
        else:
            settings = parse_settings(argv, environ, ask)
    except UsageError as exc:
        if str(exc):
            given = secrets_of(None, _token_argument(argv) or environ.get(TOKEN_ENV))
            given |= proxy_secrets(environ) | _password_arguments(argv, environ)
            print(f"lt: {redact(str(exc), given)}", file=sys.stderr)
        return EXIT_USAGE
    if settings.options.insecure:
        print(INSECURE_WARNING, file=sys.stderr)
    display: PlainDisplay
    if sys.stdout.isatty():
        display = LiveDisplay(settings.print_requests, settings.open)
    else:
        display = PlainDisplay(print_requests=settings.print_requests, open_url=settings.open)
    try:
        return run_on_loop(run_tunnel(settings, display), environ)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
