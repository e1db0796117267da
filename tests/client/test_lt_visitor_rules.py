"""Who may visit: the real `lt` sends its visitor rules (--basic-auth, --cidr-allow,
--cidr-deny, --private) as X-Tunnelsite-Access with every registration, refuses bad ones as
usage errors, and never shows a visitor's password."""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import TYPE_CHECKING

import pytest
from docs.markdown import all_fences
from harness.lt_process import name_of
from harness.terminal import Terminal
from hypothesis import given
from hypothesis import strategies as st

from tunnelsite_client.access import VisitorRules, check_cidr, visitor_rules
from tunnelsite_client.arguments import UsageError, parse_settings
from tunnelsite_client.limits import MAX_BASIC_AUTH_CHARS, MAX_BASIC_AUTH_USERS, MAX_CIDRS

if TYPE_CHECKING:
    from harness.local_apps import ThreadedHttpApp
    from harness.relay_double import RelayDouble

HEADER = "x-tunnelsite-access"
PASSWORD = "hunter2-Secret"

# Flags -> the exact header (compact JSON, keys only when set, networks normalised).
COMBINATIONS = [
    (
        ["--basic-auth", f"alice:{PASSWORD}"],
        '{"basic_auth":["alice:hunter2-Secret"]}',
    ),
    (
        ["--basic-auth", "alice:a:b:c", "--basic-auth", "bob:pw-with spaces é"],
        '{"basic_auth":["alice:a:b:c","bob:pw-with spaces \\u00e9"]}',
    ),
    (
        ["--cidr-allow", "10.1.2.3/8", "--cidr-allow", "2001:DB8::1/32"],
        '{"cidr_allow":["10.0.0.0/8","2001:db8::/32"]}',
    ),
    (["--cidr-deny", "192.0.2.7"], '{"cidr_deny":["192.0.2.7/32"]}'),
    (["--cidr-deny", "::1"], '{"cidr_deny":["::1/128"]}'),
    (["--private"], '{"private":true}'),
    (
        [
            "--private",
            "--cidr-deny",
            "10.9.0.0/16",
            "--basic-auth",
            "alice:pw12",
            "--cidr-allow",
            "10.0.0.0/8",
        ],
        '{"basic_auth":["alice:pw12"],"cidr_allow":["10.0.0.0/8"],"cidr_deny":["10.9.0.0/16"],'
        '"private":true}',
    ),
]


@pytest.mark.parametrize(("flags", "header"), COMBINATIONS)
def test_the_header_is_the_exact_json_of_the_flags(flags, header, lt_env):
    settings = parse_settings(["--port", "3000", "--host", "http://127.0.0.1:9", *flags], lt_env)
    options = settings.options
    rules = VisitorRules(
        tuple(options.basic_auth),
        tuple(options.cidr_allow),
        tuple(options.cidr_deny),
        options.private,
    )
    assert rules.header_value() == header
    assert json.loads(header)  # and it is JSON


def test_the_real_lt_sends_the_rules_and_sends_them_again_when_it_registers_again(
    relay: RelayDouble, app: ThreadedHttpApp, run_lt
):
    flags, header = COMBINATIONS[-1]
    lt = run_lt("--port", str(app.port), "--host", relay.url, *flags)
    name = name_of(lt.url())
    lt.wait_for_line(
        r"visitors: basic-auth \(alice\), from 10\.0\.0\.0/8, not from "
        r"10\.9\.0\.0/16, team only$"
    )
    relay.wait_for_sockets(name)
    assert relay.registrations[0].headers[HEADER] == header

    relay.call(relay.tunnel(name).close())  # the relay drops the pool: lt registers again
    lt.wait_for_line(rf"registered again as http://{name}\.")
    assert len(relay.registrations) >= 2
    assert all(r.headers[HEADER] == header for r in relay.registrations)
    assert relay.registrations[-1].path == f"/{name}"
    shown = "\n".join(lt.lines + lt.errors)
    assert "pw12" not in shown


def test_nothing_is_sent_when_no_rule_is_set(relay: RelayDouble, app: ThreadedHttpApp, run_lt):
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    assert HEADER not in relay.registrations[0].headers
    assert not any(line.startswith("visitors") or " visitors:" in line for line in lt.lines)


def test_the_environment_sets_the_rules_and_a_flag_wins_over_it(lt_env):
    env = {
        **lt_env,
        "LT_BASIC_AUTH": f"alice:{PASSWORD}\nbob:other-pw\n",
        "CIDR_ALLOW": "10.0.0.0/8, 2001:db8::/32",
        "CIDR_DENY": "10.9.0.0/16",
        "PRIVATE": "true",
    }
    options = parse_settings(["--port", "3000"], env).options
    assert list(options.basic_auth) == [f"alice:{PASSWORD}", "bob:other-pw"]
    assert list(options.cidr_allow) == ["10.0.0.0/8", "2001:db8::/32"]
    assert list(options.cidr_deny) == ["10.9.0.0/16"]
    assert options.private is True
    flags = ["--port", "3000", "--basic-auth", "carol:pw-carol", "--cidr-allow", "192.0.2.0/24"]
    options = parse_settings(flags, env).options
    assert list(options.basic_auth) == ["carol:pw-carol"]
    assert list(options.cidr_allow) == ["192.0.2.0/24"]


# Bad rules: usage errors (exit 2) that say what to change, never echoing the password.
BAD = [
    (["--cidr-allow", "10.0.0.300/8"], "--cidr-allow: '10.0.0.300/8' is not an address"),
    (["--cidr-deny", "fe80::1%eth0/64"], "--cidr-deny: 'fe80::1%eth0/64' is not an address"),
    (["--cidr-allow", "1.2.3.4/33"], "is not an address or network (examples:"),
    (["--cidr-allow", ""], "--cidr-allow: '' is not an address"),
    (["--basic-auth", f":{PASSWORD}"], "the user name is empty"),
    (["--basic-auth", "alice:"], "--basic-auth for 'alice': the password is empty"),
    (["--basic-auth", f"alice:{PASSWORD}\x07"], "'alice': the password has a control character"),
    (
        ["--basic-auth", f"alice:{PASSWORD}", "--basic-auth", f"alice:{PASSWORD}2"],
        "'alice' given more than once",
    ),
    (
        ["--basic-auth", f"alice:{PASSWORD}" + "x" * MAX_BASIC_AUTH_CHARS],
        f"the relay takes at most {MAX_BASIC_AUTH_CHARS}",
    ),
    (
        [a for i in range(MAX_BASIC_AUTH_USERS + 1) for a in ("--basic-auth", f"u{i}:{PASSWORD}")],
        f"at most {MAX_BASIC_AUTH_USERS} users, not {MAX_BASIC_AUTH_USERS + 1}",
    ),
    (
        [a for i in range(MAX_CIDRS + 1) for a in ("--cidr-deny", f"10.0.{i}.0/24")],
        f"at most {MAX_CIDRS} networks together, not {MAX_CIDRS + 1}",
    ),
    (["--basic-auth", "alice"], "has no password and there is no terminal to ask for it"),
    (
        ["--basic-auth", f"alice:{PASSWORD}", "--host", "http://relay.example"],
        "refusing to send visitor passwords (--basic-auth) over plain http to relay.example",
    ),
    (["--basic-autth", f"alice:{PASSWORD}"], "unrecognized arguments: --basic-autth ***"),
]


@pytest.mark.parametrize(("flags", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_a_bad_rule_is_a_usage_error_that_says_what_to_change(flags, message, run_lt):
    lt = run_lt("--port", "3000", *flags)
    assert lt.wait() == 2
    stderr = "\n".join(lt.errors)
    assert message in stderr
    assert PASSWORD not in stderr + "\n".join(lt.lines)
    assert "Traceback" not in stderr


def test_passwords_may_go_over_plain_http_with_insecure_and_rules_without_them_always(lt_env):
    host = ["--host", "http://relay.example"]
    parse_settings(["--port", "1", *host, "--cidr-allow", "10.0.0.0/8", "--private"], lt_env)
    parse_settings(["--port", "1", *host, "--basic-auth", "a:pw", "--insecure"], lt_env)
    with pytest.raises(UsageError, match="visitor passwords"):
        parse_settings(["--port", "1", *host, "--basic-auth", "a:pw"], lt_env)


@given(st.text(max_size=60))
def test_any_cidr_text_is_a_network_or_a_clear_error_never_a_crash(text):
    try:
        network = check_cidr(text, "--cidr-deny")
    except ValueError as exc:
        assert str(exc).startswith("--cidr-deny: ")
        assert "is not an address or network (examples: " in str(exc)
    else:
        assert check_cidr(network, "--cidr-deny") == network  # normal form is a fixed point


MARK = "Zq\u00a7"  # starts every generated password; in no message and no user name


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20).filter(lambda u: ":" not in u and "\u00a7" not in u),
            st.text(max_size=30).map(lambda text: MARK + text),
        ),
        max_size=MAX_BASIC_AUTH_USERS + 2,
    )
)
def test_an_error_about_credentials_never_holds_a_password(pairs):
    credentials = [f"{user}:{password}" for user, password in pairs]
    try:
        rules = visitor_rules(credentials)
    except ValueError as exc:
        assert MARK not in str(exc)
    else:
        users = [user for user, _ in pairs]
        assert rules.describe() == (f"basic-auth ({', '.join(users)})" if users else "")
        assert MARK not in repr(rules) + rules.describe()
        assert {password for _, password in pairs} <= rules.secrets()


def docs_lines() -> list[list[str]]:
    """The commands of docs/client.md's "Who may visit your tunnel" example."""
    (fence,) = [
        f
        for f in all_fences()
        if f.path.name == "client.md" and f.section == "Who may visit your tunnel" and f.is_code
    ]
    return [shlex.split(line) for line in fence.body.splitlines() if line.startswith("lt ")]


def test_the_docs_example_lines_run_and_send_what_they_say(
    relay: RelayDouble, app: ThreadedHttpApp, lt_env: dict[str, str]
):
    lines = docs_lines()
    assert len(lines) == 5
    for words in lines:
        argv = [
            {"https://tunnels.example": relay.url, "3000": str(app.port)}.get(word, word)
            for word in words[1:]
        ]
        expected = parse_settings(argv, lt_env, ask=lambda prompt: PASSWORD).options
        terminal = Terminal([sys.executable, "-m", "tunnelsite_client.cli", *argv], lt_env)
        try:
            for user in [v for v in expected.basic_auth if v.endswith(f":{PASSWORD}")]:
                terminal.wait_for(rf"password for visitors' user '{user.split(':')[0]}': ")
                os.write(terminal.master, f"{PASSWORD}\n".encode())
            name = terminal.wait_for(r"your url is: http://([a-z0-9-]+)\.")[1]
            relay.wait_for_sockets(name)
            terminal.wait_for(r"Visitors\s+\S")
        finally:
            terminal.stop()
        rules = VisitorRules(
            tuple(expected.basic_auth),
            tuple(expected.cidr_allow),
            tuple(expected.cidr_deny),
            expected.private,
        )
        assert relay.registrations[-1].headers[HEADER] == rules.header_value()
        assert PASSWORD not in terminal.text()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"alice:{PASSWORD}\x0cbob:x", "'alice': the password has a control character"),
        (f"alice{PASSWORD}", "LT_BASIC_AUTH: each line is USER:PASS"),
    ],
)
def test_a_bad_lt_basic_auth_is_a_usage_error_without_the_password(value, message, lt_env):
    with pytest.raises(UsageError) as refused:
        parse_settings(["--port", "3000"], {**lt_env, "LT_BASIC_AUTH": value})
    assert message in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_windows_line_ends_in_lt_basic_auth_are_not_part_of_a_password(lt_env):
    env = {**lt_env, "LT_BASIC_AUTH": "alice:pw-one\r\nbob:pw-two\r\n"}
    assert list(parse_settings(["--port", "3000"], env).options.basic_auth) == [
        "alice:pw-one",
        "bob:pw-two",
    ]
