"""What the admin and `createtoken` tell an operator to run works when pasted as is.

A real relay serves its admin over HTTP; an operator logs in, adds a token, and pastes the
`lt ...` command from the message; `createtoken` is run on a terminal and its usage line
pasted. Each command must register a tunnel on that relay (`your url is: ...`).
"""

from __future__ import annotations

import html
import http.cookiejar
import re
import shlex
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import Relay
from harness.terminal import Terminal

from bench.procs import client_env


@pytest.fixture(scope="module")
def admin_relay(module_relay_factory) -> Relay:
    relay = module_relay_factory()
    script = (
        "from django.contrib.auth.models import User; "
        "User.objects.create_superuser('root', 'root@example.com', 'correct-horse-42'); "
        "User.objects.create_user('alice')"
    )
    manage(relay, {}, "shell", "-v", "0", "-c", script)
    return relay


def manage(relay: Relay, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env={**relay.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def paste(command: str, tmp_path: Path) -> tuple[int | None, str]:
    """Run a pasted `lt ...` command line (our lt); (exit code or None, what it printed)."""
    words = shlex.split(command)
    assert words[0] == "lt", command
    group = ProcessGroup()
    env = client_env(LT_CONFIG_DIR=str(tmp_path / "lt-config"), PYTHONUNBUFFERED="1")
    try:
        process = group.start(
            [PYTHON, "-m", "tunnelsite_client.cli", *words[1:]], env, name="pasted lt"
        )
        process.wait_for_line(r"your url is: http://\S+")
        return process.proc.poll(), process.output()
    finally:
        group.stop_all()


class Browser:
    """The admin over HTTP with a cookie jar, as an operator's browser would use it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.read().decode()

    def post_form(self, path: str, fields: dict[str, str]) -> str:
        page = self.get(path)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert csrf, page[:2000]
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": csrf[1]}).encode()
        request = urllib.request.Request(
            self.base + path, data=data, headers={"Referer": self.base + path}
        )
        with self.opener.open(request, timeout=10) as response:
            return response.read().decode()


def test_the_command_in_the_admins_new_token_message_registers_when_pasted(
    admin_relay: Relay, tmp_path: Path
):
    browser = Browser(f"http://localhost:{admin_relay.port}")
    browser.post_form(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "correct-horse-42", "next": "/admin/"},
    )
    script = (
        "from django.contrib.auth.models import User; print(User.objects.get(username='alice').pk)"
    )
    alice = manage(admin_relay, {}, "shell", "-v", "0", "-c", script).stdout.strip()
    page = browser.post_form(
        "/admin/tunnels/apitoken/add/",
        {"user": alice, "name": "laptop", "plan": "", "expires_0": "", "expires_1": ""},
    )

    message = html.unescape(re.search(r"The new token is [^<]+", page)[0])  # type: ignore[index]
    command = re.search(r"Use it as: (lt .+?)(?: \(or |$)", message)[1]  # type: ignore[index]
    assert command.startswith(f"lt --port 3000 --host http://localhost:{admin_relay.port} ")
    assert "@" not in command  # the token goes in --token, not in the URL
    code, output = paste(command, tmp_path)
    assert code is None, output  # still running: registered and serving


def test_the_usage_line_createtoken_prints_on_a_terminal_registers_when_pasted(
    admin_relay: Relay, tmp_path: Path
):
    env = {**admin_relay.env, "RELAY_PORT": str(admin_relay.port), "TERM": "xterm"}
    terminal = Terminal([PYTHON, "manage.py", "createtoken", "alice"], env)
    try:
        command = terminal.wait_for(r"Use it as: (lt [^\r\n]+)")[1].strip()
        assert terminal.proc.wait(30) == 0
    finally:
        terminal.stop()

    code, output = paste(command, tmp_path)
    assert code is None, output


def test_createtoken_piped_prints_only_the_token_and_keeps_it_out_of_stderr(
    admin_relay: Relay,
):
    done = manage(admin_relay, {"RELAY_PORT": str(admin_relay.port)}, "createtoken", "alice")

    token = done.stdout.strip()
    assert done.stdout == token + "\n" and token.startswith("lt_")
    assert token not in done.stderr
    assert f"--host http://localhost:{admin_relay.port} --token TOKEN" in done.stderr
