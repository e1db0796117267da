"""`manage.py check --deploy` says only what docs/deploy.md explains (section "What check
--deploy still says"), for each way of deploying it describes."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PLAIN_HTTP: dict[str, str] = {}
BEHIND_A_TLS_PROXY = {"RELAY_PUBLIC_SCHEME": "https", "RELAY_PUBLIC_PORT": "443"}
BEHIND_A_TLS_PROXY_WITH_HSTS = {
    **BEHIND_A_TLS_PROXY,
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
}


# Variables a developer's shell might hold that would change the answer.
SETTINGS_UNDER_TEST = {
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_PRELOAD",
    *BEHIND_A_TLS_PROXY_WITH_HSTS,
}


def clean_environment(**env: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if k not in SETTINGS_UNDER_TEST}
    return {**kept, **env}


def deploy_warnings(**env: str) -> set[str]:
    production = clean_environment(DEBUG="false", SECRET_KEY=secrets.token_urlsafe(48)[:50], **env)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=production,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"\((\w+\.[WE]\d+)\)", result.stderr + result.stdout))


def documented_section() -> str:
    page = (ROOT / "docs" / "deploy.md").read_text()
    return page.split("## What check --deploy still says", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (PLAIN_HTTP, {"security.W004", "security.W008", "security.W012", "security.W016"}),
        (BEHIND_A_TLS_PROXY, {"security.W004", "security.W008"}),
        (BEHIND_A_TLS_PROXY_WITH_HSTS, {"security.W021"}),
    ],
    ids=["plain-http", "behind-a-tls-proxy", "behind-a-tls-proxy-with-hsts"],
)
def test_check_deploy_warns_only_about_what_the_deploy_page_explains(
    env: dict[str, str], expected: set[str]
) -> None:
    assert deploy_warnings(**env) == expected
    documented = set(re.findall(r"`(security\.W\d+)`", documented_section()))
    assert expected <= documented


def test_secure_cookies_get_host_prefixed_names_over_https() -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; django.setup(); from django.conf import settings as s; "
            "print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, s.CSRF_TRUSTED_ORIGINS)",
        ],
        cwd=ROOT,
        env=clean_environment(
            DJANGO_SETTINGS_MODULE="tunnelsite.settings",
            RELAY_DOMAIN="tunnels.example",
            **BEHIND_A_TLS_PROXY,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip().split(maxsplit=2) == [
        "__Host-sessionid",
        "__Host-csrftoken",
        "['https://tunnels.example']",
    ], probe.stderr


def test_redirecting_to_https_without_the_proxy_header_is_refused_at_start() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean_environment(SECURE_SSL_REDIRECT="true"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER" in result.stderr
