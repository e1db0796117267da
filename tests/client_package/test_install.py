"""`lt` as its own distribution: ./client installed the ways docs/client.md says (pipx from
the repository's root, and pip into a fresh venv), with only the client's dependencies, then
run against a real relay.

Each install goes to this test's tmp directory (PIPX_HOME, PIPX_BIN_DIR, PIPX_MAN_DIR, the
venv), so nothing reaches the user's own pipx or the repository's venv; and each builds from a
copy of client/ in a tmp copy of the repository's layout (one per xdist worker), so two workers
never build in the same directory and the checkout is never written (a build in place leaves
client/build, whose stale files could end up in a later wheel). PyPI must be reachable (the
build needs its backend; the client needs h11, rich, platformdirs and uvloop).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import LocalApp, Relay, RelayLauncher
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bench.procs import client_env

INSTALL_TIMEOUT_S = 300.0  # a build and three wheels from PyPI, on a busy shared machine
RUN_TIMEOUT_S = 60.0
SERVER_ONLY = {"django", "twisted", "psycopg", "psycopg-binary", "channels", "daphne", "redis"}
CLIENT = ROOT / "client"
# What a fresh venv holds before anything is installed into it (pip; setuptools on older
# Pythons), and what pipx's shared libraries put beside it.
VENV_OWN = {"pip", "setuptools", "wheel"}

# Lists a venv's distributions with what each requires: run by the venv's own python.
LIST_SCRIPT = """
import json, importlib.metadata as md
print(json.dumps({d.metadata["Name"]: d.requires or [] for d in md.distributions()}))
"""


def client_version() -> str:
    init = (CLIENT / "tunnelsite_client" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', init, re.M)
    assert match, "tunnelsite_client/__init__.py names no __version__"
    return match.group(1)


def pinned() -> set[str]:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(dep).name) for dep in project["dependencies"]}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would let the repository's own venv
    or checkout leak into the installed client."""
    env = client_env(**extra)
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = RUN_TIMEOUT_S) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# What a build leaves beside the sources, and the bytecode that any run of the checkout's own
# editable `lt` writes: never copied, never compared.
BUILT = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")


def tree(root: Path) -> dict[str, int]:
    """Every file and directory under `root` (but __pycache__) with its modification time."""
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in sorted(root.rglob("*"))
        if "__pycache__" not in path.parts
    }


@dataclass(frozen=True)
class Source:
    root: Path  # a copy of the repository's layout holding only client/
    checkout: dict[str, int]  # the checkout's client/ before any install (`tree`)
    copied: dict[str, int]  # the copy's client/ before any install


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """client/'s sources copied to <tmp>/client, where the installs build."""
    checkout = tree(CLIENT)
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(CLIENT, root / "client", ignore=BUILT)
    return Source(root, checkout, tree(root / "client"))


@dataclass(frozen=True)
class Installed:
    python: Path  # the interpreter of the venv the client went into
    lt: Path  # the `lt` command the install put on PATH
    home: Path  # a directory outside the checkout, to run commands from


@pytest.fixture(scope="module")
def by_pipx(tmp_path_factory: pytest.TempPathFactory, source: Source) -> Installed:
    """`pipx install ./client`, from the (copied) repository's root, as docs/client.md says."""
    home = tmp_path_factory.mktemp("pipx")
    env = clean_env(
        PIPX_HOME=str(home / "pipx-home"),
        PIPX_BIN_DIR=str(home / "bin"),
        PIPX_MAN_DIR=str(home / "man"),
    )
    run([PYTHON, "-m", "pipx", "install", "./client"], source.root, env, INSTALL_TIMEOUT_S)
    venv = home / "pipx-home" / "venvs" / "tunnelsite-client"
    return Installed(venv / "bin" / "python", home / "bin" / "lt", home)


@pytest.fixture(scope="module")
def by_pip(tmp_path_factory: pytest.TempPathFactory, source: Source) -> Installed:
    """`python -m venv` and `pip install ./client` into it (from the copy)."""
    home = tmp_path_factory.mktemp("venv")
    venv = home / "venv"
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    run([PYTHON, "-m", "venv", str(venv)], home, env)
    pip = [str(venv / "bin" / "pip"), "install", "./client"]
    run(pip, source.root, env, INSTALL_TIMEOUT_S)
    return Installed(venv / "bin" / "python", venv / "bin" / "lt", home)


@pytest.fixture(params=["pipx", "pip"])
def installed(request: pytest.FixtureRequest) -> Installed:
    return request.getfixturevalue(f"by_{request.param}")


def distributions(installed: Installed) -> dict[str, list[str]]:
    out = run([str(installed.python), "-c", LIST_SCRIPT], installed.home, clean_env())
    return {canonicalize_name(name): requires for name, requires in json.loads(out).items()}


def needed_by(name: str, found: dict[str, list[str]]) -> set[str]:
    """`name` and everything it requires, transitively (extras not asked for left out)."""
    closure, todo = set(), [canonicalize_name(name)]
    while todo:
        current = todo.pop()
        if current in closure:
            continue
        closure.add(current)
        for spec in found.get(current, []):
            requirement = Requirement(spec)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            todo.append(canonicalize_name(requirement.name))
    return closure


def test_installing_writes_nothing_into_the_checkout(
    source: Source, by_pipx: Installed, by_pip: Installed
) -> None:
    assert tree(CLIENT) == source.checkout


def test_a_users_install_leaves_nothing_beside_the_sources(
    source: Source, by_pipx: Installed, by_pip: Installed
) -> None:
    """What `pip install ./client` and `pipx install ./client` leave in a user's checkout:
    nothing (no client/build, no egg-info: client/pyproject.toml's build backend)."""
    assert tree(source.root / "client") == source.copied


def test_lt_version_prints_the_clients_version(installed: Installed) -> None:
    out = run([str(installed.lt), "--version"], installed.home, clean_env())
    assert client_version() in out


def test_lt_help_describes_the_command(installed: Installed) -> None:
    out = run([str(installed.lt), "--help"], installed.home, clean_env())
    assert "--port" in out
    assert "--subdomain" in out


def test_the_library_imports_from_the_venv_not_the_checkout(installed: Installed) -> None:
    out = run(
        [str(installed.python), "-c", "import tunnelsite_client as c; print(c.__file__)"],
        installed.home,
        clean_env(),
    )
    where = Path(out.strip()).resolve()
    assert where.is_relative_to(installed.python.parent.parent.resolve()), where
    assert not where.is_relative_to(ROOT.resolve()), where


def test_no_server_package_comes_with_it(installed: Installed) -> None:
    found = distributions(installed)
    assert not SERVER_ONLY & found.keys(), sorted(SERVER_ONLY & found.keys())
    requires = {canonicalize_name(Requirement(dep).name) for dep in found["tunnelsite-client"]}
    assert requires == pinned()
    # Exactly the client, its pinned dependencies and theirs: nothing else was pulled in.
    assert found.keys() - VENV_OWN == needed_by("tunnelsite-client", found)
    assert pinned() <= found.keys()


def test_there_is_no_generic_client_package(installed: Installed) -> None:
    """The old importable name `client` is gone (docs/client.md: Moving from `client`)."""
    done = subprocess.run(
        [str(installed.python), "-c", "import client"],
        cwd=installed.home,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode != 0
    assert "No module named 'client'" in done.stderr


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


def test_the_installed_lt_serves_a_request_through_a_real_relay(
    installed: Installed,
    relay_factory: RelayLauncher,
    local_app: LocalApp,
    processes: ProcessGroup,
    tmp_path: Path,
) -> None:
    relay: Relay = relay_factory()
    env = clean_env(LT_CONFIG_DIR=str(tmp_path / "lt-config"), PYTHONUNBUFFERED="1")
    args = [str(installed.lt), "--port", str(local_app.port)]
    lt = processes.start(args + ["--host", f"http://localhost:{relay.port}"], env, name="lt")
    url = lt.wait_for_line(r"your url is: (\S+)").group(1)
    name = re.match(r"https?://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
    relay.wait_for_sockets(name, int(relay.env.get("RELAY_MAX_SOCKETS", "10")))
    answer = relay.get("/hello", name=name)
    assert answer.status == 200
    assert answer.body == local_app.get("/hello").body
