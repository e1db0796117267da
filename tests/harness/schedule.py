"""The order the suite's files run in: the slowest first (conftest.py sorts by `sort_keys`)."""

from __future__ import annotations

from collections.abc import Iterable

# `make test` hands whole files to three workers (`--dist loadfile`), in collection order
# (`--no-loadscope-reorder` in pyproject.toml: xdist's default order is by the number of tests
# in a file, which left the slowest one-test files, the churn and the benchmark's smoke test,
# for the end, each with a worker to itself while the others had nothing left). The run is
# only as short as its last file, so the slowest files go first and the many short ones fill
# in behind them. Seconds per file summed from a `--junitxml` of a whole run on a busy 2-core
# machine (2026-12-02, load 8 to 14): the order matters, not the figures. A file not listed
# here runs after these, e2e files before the rest.
SLOWEST_FILES = {
    "accounts/test_signin_limits.py": 182,
    "quota/test_bandwidth.py": 168,
    "hardening/test_cpu_per_peer.py": 135,
    "hardening/test_websocket_buffers.py": 115,
    "cluster/test_two_nodes.py": 111,
    "bench_smoke/test_bench_smoke.py": 100,
    "newcomer/test_production.py": 92,
    "client/test_lt_login_device.py": 89,
    "e2e/test_control_listener.py": 85,
    "hardening/test_churn.py": 79,
    "sanctions/test_suspend.py": 76,
    "browser/test_account_page_in_chromium.py": 74,
    "quota/test_restart_and_websockets.py": 71,
    "browser/test_visitor_access_in_chromium.py": 61,
    "dashboard_cluster/test_dashboard_every_node.py": 58,
    "browser/test_device_login_in_chromium.py": 51,
    "browser/test_visitor_pages_in_chromium.py": 50,
    "e2e/test_runrelay_flags.py": 50,
    "metrics/test_counters.py": 49,
    "client_package/test_install.py": 46,
    "e2e/test_relay_process.py": 46,
    "browser/test_dashboard_in_chromium.py": 46,
    "browser/test_tcp_pages_in_chromium.py": 45,
    "e2e/test_visitor_share.py": 42,
    "cluster/test_node_failure.py": 39,
    "e2e/test_relay_tls.py": 39,
    "docs/test_fences.py": 39,
    "browser/test_inspector_in_chromium.py": 38,
    "tcp/test_restart.py": 36,
    "hardening/test_properties.py": 36,
    "e2e/test_static_files.py": 33,
    "inspector/test_replay_limits.py": 33,
    "client/test_lt_process.py": 32,
    "e2e/test_kept_local_connection.py": 30,
    "datapath/test_slow_bodies.py": 29,
    "e2e/test_registrations.py": 29,
    "tcp/test_what_users_see.py": 27,
    "cluster/test_one_relay_per_name.py": 27,
    "cluster/test_any_node_api.py": 26,
    "datapath/test_upload_memory.py": 25,
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
