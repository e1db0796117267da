"""The bench starts each client with its own tree's client package: a checkout measured
beside this one with the same venv (docs/benchmarks.md, "against the code before") ran the
venv's editable client, this tree's, instead of its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 60.0

# Run from the copied tree: the bench's environment for a client, then where a client
# started with it imports its package from.
PROBE = """
import subprocess, sys
from bench.procs import client_env
where = "import tunnelsite_client; print(tunnelsite_client.__file__)"
done = subprocess.run([sys.executable, "-c", where], env=client_env(), capture_output=True,
                      text=True, timeout=30, check=True)
print(done.stdout.strip())
"""


def test_a_copied_tree_starts_its_own_client(tmp_path: Path) -> None:
    tree = tmp_path / "other-checkout"
    shutil.copytree(ROOT / "bench", tree / "bench", ignore=shutil.ignore_patterns(".reference"))
    package = tree / "client" / "tunnelsite_client"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""The other checkout\'s client."""\n')
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == package / "__init__.py"
