"""docs/metrics.md's Prometheus configs pass `promtool check config` (tests/docs runs the sh
and python fences; a `yaml` fence is Prometheus' here), with its token file made up."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness.processes import ROOT
from harness.prometheus import PROMTOOL
from harness.waiting import IO_TIMEOUT_S

PAGE = ROOT / "docs" / "metrics.md"
TOKEN_FILE = "/etc/prometheus/tunnelsite-metrics-token"


def test_every_yaml_fence_is_a_prometheus_config_promtool_accepts(tmp_path: Path) -> None:
    fences = re.findall(r"^```yaml\n(.*?)^```", PAGE.read_text(), re.MULTILINE | re.DOTALL)
    assert fences, "docs/metrics.md shows a scrape config"
    token = tmp_path / "token"
    token.write_text("a-token\n")
    for index, fence in enumerate(fences):
        config = tmp_path / f"prometheus-{index}.yml"
        config.write_text(fence.replace(TOKEN_FILE, str(token)))
        done = subprocess.run(
            [str(PROMTOOL), "check", "config", str(config)],
            capture_output=True,
            text=True,
            timeout=IO_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stdout + done.stderr
