"""Every code example in README.md and docs/*.md runs as written, against a real relay.

The rule (tests/docs/markdown.py): fences in python, sh, bash, shell or console are code and
run here unless their info string says `no-test: <why>`; 8080 and 3000 (the quick start's
relay and app ports) become this test's free ports. What the examples may assume, as a reader
who followed the quick start would have it: a relay on 8080 with its defaults (tokens
optional, as with `make run`), an app on 3000 (`python -m http.server`), the npm client
serving the tunnel `my-app`, and a user `alice` in the relay's database.

Python fences run as scripts; shell fences run with `bash -e -o pipefail` in the repository,
with `.venv/bin` first on PATH and the relay's database and key (so `manage.py` commands act
on the relay under test), and a fresh `LT_CONFIG_DIR` (so `lt login` touches no real one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import LtLauncher, Relay

from bench.procs import client_env

from .markdown import SHELL_LANGUAGES, Fence, all_fences, localised

FENCES = all_fences()
RUN_TIMEOUT_S = 60.0
QUICK_START_NAME = "my-app"
EXAMPLE_USER = "alice"
# What a shell example needs of the relay's environment to act on the relay under test.
RELAY_ENV = ("DEBUG", "SECRET_KEY", "DATABASE_URL")


def runnable(language: set[str]) -> list[object]:
    return [pytest.param(f, id=f.id) for f in FENCES if f.runs and f.language in language]


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    """A user's app: `python -m http.server` on a free port (it answers / with 200)."""
    group = ProcessGroup()
    try:
        process = group.start(
            [PYTHON, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
            {**os.environ},
            name="http.server",
        )
        yield int(process.wait_for_line(r"Serving HTTP on \S+ port (\d+)").group(1))
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    return module_relay_factory()


@pytest.fixture(scope="module")
def quick_start_tunnel(relay: Relay, app: int, module_lt_factory: LtLauncher) -> str:
    return module_lt_factory(relay, app, subdomain=QUICK_START_NAME).name


@pytest.fixture(scope="module")
def example_user(relay: Relay) -> str:
    """The docs' `alice`, made as an operator would: `createsuperuser --noinput`."""
    subprocess.run(
        [PYTHON, "manage.py", "createsuperuser", "--noinput", "--username", EXAMPLE_USER]
        + ["--email", f"{EXAMPLE_USER}@example.com"],
        cwd=ROOT,
        env=relay.env,
        capture_output=True,
        check=True,
        timeout=RUN_TIMEOUT_S,
    )
    return EXAMPLE_USER


def run(args: list[str], env: dict[str, str], fence: Fence) -> None:
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"{fence} exited with {done.returncode}:\n{output}"
    assert "Traceback" not in output, f"{fence}:\n{output}"


@pytest.mark.parametrize("fence", runnable({"python"}))
def test_the_python_example_runs_as_written(
    fence: Fence, relay: Relay, app: int, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(localised(fence.body, relay.port, app))
    run([sys.executable, str(script)], client_env(), fence)


@pytest.mark.parametrize("fence", runnable(SHELL_LANGUAGES))
def test_the_shell_example_runs_as_written(
    fence: Fence,
    relay: Relay,
    app: int,
    quick_start_tunnel: str,
    example_user: str,
    tmp_path: Path,
) -> None:
    env = client_env(**{key: relay.env[key] for key in RELAY_ENV if key in relay.env})
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["LT_CONFIG_DIR"] = str(tmp_path / "lt-config")
    body = localised(fence.body, relay.port, app)
    run(["bash", "-e", "-o", "pipefail", "-c", body], env, fence)


def test_every_example_that_does_not_run_says_why() -> None:
    silent = [str(f) for f in FENCES if f.is_code and not f.runs and not f.no_test_reason]
    assert not silent, f"code fences marked no-test without a reason: {silent}"


def test_the_rule_finds_examples_of_both_kinds_on_the_readme_and_in_docs() -> None:
    for where in ("README.md", "docs/"):
        languages = {f.language for f in FENCES if f.runs and f.id.startswith(where)}
        assert "python" in languages or where == "README.md", (where, languages)
        assert "sh" in languages, (where, [str(f) for f in FENCES])


def test_the_readme_and_the_account_page_say_how_to_make_an_account_and_it_runs() -> None:
    # /account/ and `lt login` in the browser need an account: a newcomer must read (and the
    # shell test above runs) how to make one, not only in the production block.
    for where in ("README.md", "docs/account.md"):
        runs = [f for f in FENCES if f.runs and f.id.startswith(where)]
        assert any("manage.py createsuperuser" in f.body for f in runs), where
