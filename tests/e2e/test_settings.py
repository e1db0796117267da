"""Malformed settings stop the process at start with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RELAY_PORT", "eighty"),
        ("RELAY_POOL_PORTS", "40000-39000"),
        ("RELAY_GRACE_S", "soon"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "nosuchdb://x"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("RELAY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("RELAY_REGISTRATION_BURST", "0"),
        ("RELAY_REGISTRATIONS_PER_MINUTE", "lots"),
        ("RELAY_SESSION_RETENTION_DAYS", "-1"),
        ("RELAY_IPV6_PREFIX", "129"),
        ("RELAY_IPV6_PREFIX", "/64"),
        ("RELAY_WS_BUFFER_BYTES", "1000"),
        ("RELAY_SPARE_SOCKETS", "two"),
        ("RELAY_WS_SPARE_SOCKETS", "two"),
        ("RELAY_WS_MAX_PER_VISITOR", "0"),
        ("RELAY_BODY_MAX_AHEAD_S", "5"),
        ("RELAY_LOG_LEVEL", "LOUD"),
        ("RELAY_RAW_POOL_REUSE", "sometimes"),
        ("RELAY_METRICS_TOKEN", "too-short-to-be-a-secret"),
        # A listener without a token on every interface, a public address or a name that
        # could be one: only with RELAY_METRICS_BIND_PUBLIC=true.
        ("RELAY_METRICS_BIND", "0.0.0.0:9100"),
        ("RELAY_METRICS_BIND", "[::]:9100"),
        ("RELAY_METRICS_BIND", "8.8.8.8:9100"),  # (documentation ranges count as private)
        ("RELAY_METRICS_BIND", "metrics.example.com:9100"),
        ("RELAY_METRICS_BIND_PUBLIC", "maybe"),
        ("RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND", "1"),  # below BANDWIDTH_MIN_BYTES_PER_SECOND
    ],
)
def test_a_malformed_value_names_the_variable(name: str, value: str) -> None:
    result = _check(**{name: value})
    assert result.returncode != 0
    assert name in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]


def test_the_defaults_need_nothing_installed() -> None:
    result = _check()
    assert result.returncode == 0, result.stderr


def test_the_former_name_of_relay_spare_sockets_still_sets_it() -> None:
    show = "from django.conf import settings; print(settings.RELAY_SPARE_SOCKETS)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", show],
        cwd=ROOT,
        env={**os.environ, "RELAY_WS_SPARE_SOCKETS": "3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split()[-1] == "3", done.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"RELAY_METRICS_BIND": "127.0.0.1:9100"},
        {"RELAY_METRICS_BIND": "[::1]:9100"},
        {"RELAY_METRICS_BIND": "localhost:9100"},
        {"RELAY_METRICS_BIND": "10.1.2.3:9100"},
        {"RELAY_METRICS_BIND": "[fd12::3]:9100"},
        {"RELAY_METRICS_BIND": "100.101.102.103:9100"},  # Tailscale's range
        {"RELAY_METRICS_BIND": "0.0.0.0:9100", "RELAY_METRICS_BIND_PUBLIC": "true"},
        {"RELAY_METRICS_TOKEN": "x" * 32},
    ],
)
def test_metrics_settings_a_monitoring_setup_uses_are_accepted(env: dict[str, str]) -> None:
    result = _check(**env)
    assert result.returncode == 0, result.stderr


def test_a_public_metrics_listener_says_how_to_bind_it_or_opt_in() -> None:
    message = _check(RELAY_METRICS_BIND="0.0.0.0:9100").stderr.splitlines()[-1]
    assert "RELAY_METRICS_BIND_PUBLIC=true" in message and "127.0.0.1:9100" in message
    short = _check(RELAY_METRICS_TOKEN="abc").stderr.splitlines()[-1]
    assert "at least 32" in short and "token_urlsafe" in short and "abc" not in short
