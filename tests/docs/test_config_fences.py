"""The nginx, HAProxy and Caddy examples in the docs are valid configuration, as the programs
say.

Each ```nginx fence goes into a minimal nginx.conf (inside `http { }`) and through `nginx -t`;
each ```haproxy fence through `haproxy -c`; each ```caddy fence through `caddy validate`
(which also loads its certificates). Certificate paths (`/etc/...pem`) become a throwaway
self-signed certificate, the only thing changed. `make test` installs the three programs
(Debian's nginx-light, haproxy and caddy). A fence that cannot be checked says why
(`no-check:`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .markdown import Fence, all_fences

FENCES = all_fences()
CHECK_TIMEOUT_S = 30.0
CERTIFICATE_PATH = re.compile(r"/etc/\S+\.pem")
NGINX_CONF = """\
pid {tmp}/nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
{body}
}}
"""


def checked(language: str) -> list[object]:
    return [pytest.param(f, id=f.id) for f in FENCES if f.checked and f.language == language]


def program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found is None:
        pytest.fail(f"{name} is not installed; `make test` installs it")
    return found


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate and its key in one file (HAProxy's `crt`; nginx reads both)."""
    where = tmp_path_factory.mktemp("tls")
    key, cert = where / "key.pem", where / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
        + ["-subj", "/CN=tunnels.example"],
        check=True,
        capture_output=True,
        timeout=CHECK_TIMEOUT_S,
    )
    combined = where / "tunnels.example.pem"
    combined.write_text(cert.read_text() + key.read_text())
    return combined


def check(args: list[str], fence: Fence) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    assert done.returncode == 0, f"{fence} is not valid:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("fence", checked("nginx"))
def test_the_nginx_example_passes_nginx_t(fence: Fence, pem: Path, tmp_path: Path) -> None:
    body = CERTIFICATE_PATH.sub(str(pem), fence.body)
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp_path, body=body))
    check(
        [program("nginx"), "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)], fence
    )


@pytest.mark.parametrize("fence", checked("haproxy"))
def test_the_haproxy_example_passes_haproxy_c(fence: Fence, pem: Path, tmp_path: Path) -> None:
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(CERTIFICATE_PATH.sub(str(pem), fence.body))
    check([program("haproxy"), "-c", "-q", "-f", str(conf)], fence)


@pytest.mark.parametrize("fence", checked("caddy"))
def test_the_caddy_example_passes_caddy_validate(fence: Fence, pem: Path, tmp_path: Path) -> None:
    conf = tmp_path / "Caddyfile"
    conf.write_text(CERTIFICATE_PATH.sub(str(pem), fence.body))
    check(caddy_validate(conf, tmp_path), fence)


def caddy_validate(conf: Path, home: Path) -> list[str]:
    # Caddy keeps its state under $HOME/$XDG_*: the test's directory, not the machine's.
    env = [f"{name}={home}" for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")]
    validate = [program("caddy"), "validate", "--adapter", "caddyfile", "--config", str(conf)]
    return ["env", *env, *validate]


def test_a_broken_caddy_example_would_fail(tmp_path: Path) -> None:
    conf = tmp_path / "Caddyfile"
    conf.write_text(
        "tunnels.example {\n    reverse_proxy 127.0.0.1:8080 {\n        bogus 1\n    }\n}\n"
    )
    done = subprocess.run(
        caddy_validate(conf, tmp_path), capture_output=True, timeout=CHECK_TIMEOUT_S
    )
    assert done.returncode != 0


def test_a_broken_nginx_example_would_fail(pem: Path, tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp_path, body="server { listen 80; proxy_pas x; }"))
    done = subprocess.run(
        [program("nginx"), "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        timeout=CHECK_TIMEOUT_S,
    )
    assert done.returncode != 0


def test_every_config_example_is_checked_or_says_why() -> None:
    languages = {f.language for f in FENCES if f.checked}
    assert {"nginx", "haproxy", "caddy"} <= languages, [str(f) for f in FENCES if f.is_config]
    silent = [str(f) for f in FENCES if f.is_config and not f.checked and not f.no_check_reason]
    assert not silent, f"config fences marked no-check without a reason: {silent}"
