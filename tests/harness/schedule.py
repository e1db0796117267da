"""The order the suite's files run in: the slowest first (conftest.py sorts by `place`)."""

from __future__ import annotations

from collections.abc import Iterable

# `make test` hands whole files to three workers (`--dist loadfile`), in collection order
# (`--no-loadscope-reorder` in pyproject.toml: xdist's default order is by the number of tests
# in a file, which left the slowest one-test files, the churn and the benchmark's smoke test,
# for the end, each with a worker to itself while the others had nothing left). The run is
# only as short as its last file, so the slowest files go first and the many short ones fill
# in behind them. Seconds per file summed from a `--junitxml` of a whole run on a busy 2-core
# machine (2026-12-02); a file not listed here runs after these, e2e files before the rest.
SLOWEST_FILES = {
    "quota/test_bandwidth.py": 117,
    "accounts/test_signin_limits.py": 114,
    "hardening/test_cpu_per_peer.py": 110,
    "client/test_lt_login_device.py": 104,
    "e2e/test_control_listener.py": 102,
    "bench_smoke/test_bench_smoke.py": 100,
    "hardening/test_websocket_buffers.py": 97,
    "browser/test_account_page_in_chromium.py": 85,
    "browser/test_visitor_access_in_chromium.py": 84,
    "dashboard_cluster/test_dashboard_every_node.py": 84,
    "hardening/test_churn.py": 83,
    "cluster/test_two_nodes.py": 76,
    "newcomer/test_production.py": 72,
    "quota/test_restart_and_websockets.py": 71,
    "browser/test_device_login_in_chromium.py": 67,
    "cluster/test_node_failure.py": 66,
    "browser/test_dashboard_in_chromium.py": 66,
    "cluster/test_one_relay_per_name.py": 64,
    "cluster/test_node_url.py": 60,
    "sanctions/test_suspend.py": 60,
    "browser/test_visitor_pages_in_chromium.py": 59,
    "browser/test_tcp_pages_in_chromium.py": 54,
    "browser/test_inspector_in_chromium.py": 53,
    "e2e/test_visitor_share.py": 53,
    "cluster/test_hop_markers.py": 52,
    "tcp/test_two_nodes_haproxy.py": 52,
    "tcp/test_restart.py": 52,
    "metrics/test_counters.py": 52,
    "cluster/test_visitor_access_cluster.py": 46,
    "e2e/test_static_files.py": 45,
    "e2e/test_runrelay_flags.py": 44,
    "inspector/test_replay_limits.py": 43,
    "network/test_capture.py": 43,
    "e2e/test_registrations.py": 42,
    "tcp/test_what_users_see.py": 38,
    "cluster/test_visitor_rules_hop.py": 37,
    "cluster/test_metrics_on_nodes.py": 36,
    "cluster/test_bandwidth_on_the_owner.py": 36,
    "client_package/test_install.py": 36,
    "cluster/test_sanctions_across_nodes.py": 35,
}
LAYER_ORDER = ("e2e", "sockets", "django", "unit")  # of the files not in SLOWEST_FILES


def sort_keys(files: Iterable[tuple[str, str]]) -> dict[str, tuple[int, float, int]]:
    """Each file's sort key, from its path (relative to tests/) and layer, for the files in
    the order collected (a file may come more than once: pytest-django puts every TestCase
    first): the listed slow files first, slowest first; then the others by layer; within
    each, the order each file was first seen, so a file's tests stay together."""
    keys: dict[str, tuple[int, float, int]] = {}
    for path, layer in files:
        if path not in keys:
            if path in SLOWEST_FILES:
                keys[path] = (0, -SLOWEST_FILES[path], len(keys))
            else:
                keys[path] = (1 + LAYER_ORDER.index(layer), 0, len(keys))
    return keys
