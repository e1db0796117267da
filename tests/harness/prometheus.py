"""/metrics as Prometheus sees it (tests/metrics): scraping a relay both ways, reading and
checking the exposition (promtool), and a real Prometheus (Debian's) scraping relays."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.http import Answer, Visitor
from harness.processes import Process, ProcessGroup
from harness.relay import Relay, free_port
from harness.waiting import IO_TIMEOUT_S

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
TOKEN = "metrics-token-for-tests-0123456789abcdef"  # what the tests' relays are given


def bare(relay: Relay, token: str | None = TOKEN, target: str = "/metrics") -> Answer:
    """`GET /metrics` on the relay's bare domain, with `token` as the bearer (None: none)."""
    headers = [("Authorization", f"Bearer {token}")] if token is not None else []
    with Visitor(relay.port, f"localhost:{relay.port}") as visitor:
        return visitor.request("GET", target, headers)


def listener_port(relay: Relay) -> int:
    """The port RELAY_METRICS_BIND's listener bound (the banner prints it)."""
    line = relay.process.wait_for_line(r"metrics: http://127\.0\.0\.1:(\d+)/metrics")
    return int(line.group(1))


def listener(port: int, target: str = "/metrics", method: str = "GET") -> Answer:
    with Visitor(port, f"127.0.0.1:{port}") as visitor:
        return visitor.request(method, target)


def scrape(relay: Relay) -> str:
    answer = bare(relay)
    assert answer.status == 200, answer
    assert answer.header("content-type").startswith("text/plain; version=0.0.4"), answer
    return answer.body.decode()


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def series(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of the samples called `name`."""
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def promtool_check(text: str) -> None:
    """`promtool check metrics` on the exposition: it must find nothing to say."""
    done = subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=IO_TIMEOUT_S,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@dataclass
class Job:
    """One scrape job: a relay's bare domain with a bearer token, or the metrics listener."""

    name: str
    port: int
    token: str = ""

    def config(self) -> str:
        auth = (
            f"    authorization:\n      type: Bearer\n      credentials: {self.token}\n"
            if self.token
            else ""
        )
        return (
            f"  - job_name: {self.name}\n"
            "    scrape_interval: 1s\n"
            "    scrape_timeout: 1s\n"
            f"{auth}"
            f"    static_configs:\n      - targets: ['127.0.0.1:{self.port}']\n"
        )


class Prometheus:
    """Debian's Prometheus with a temporary config and storage, on a free loopback port."""

    def __init__(self, group: ProcessGroup, workdir: Path, jobs: list[Job]) -> None:
        if not PROMETHEUS.exists():
            pytest.fail("prometheus is not installed; `make test` installs Debian's prometheus")
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n")
        with config.open("a") as out:
            for job in jobs:
                out.write(job.config())
        checked = subprocess.run(
            [str(PROMTOOL), "check", "config", str(config)],
            capture_output=True,
            text=True,
            timeout=IO_TIMEOUT_S,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        self.port = free_port()
        self.process: Process = group.start(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            name="prometheus",
        )
        self.process.wait_for_line(r"Server is ready to receive web requests")

    def api(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT_S) as answer:  # noqa: S310
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def health(self) -> dict[str, str]:
        """Each job's target health ("up", "down", "unknown") and last error."""
        return {
            target["labels"]["job"]: f"{target['health']} {target['lastError']}".strip()
            for target in self.api("targets")["activeTargets"]
        }

    def query(self, expr: str) -> dict[str, float]:
        """An instant query: each result's job -> value."""
        return {
            row["metric"].get("job", ""): float(row["value"][1])
            for row in self.api("query", query=expr)["result"]
        }
