"""The README's production example, as written, on loopback: DEBUG=false, runrelay serving
https itself with a certificate for the domain and its tunnels (a test CA's, in place of
certbot's), a superuser and a token from the same shell, our `lt` registering with that token
over https (its pool upgraded inside TLS), and the admin and the dashboard in headless
Chromium with their stylesheets (screenshots in artifacts/)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from harness.browser import headless_chromium, wait_for
from harness.newcomer import (
    Clone,
    commands,
    fence_after,
    readme_section,
    replace,
)
from harness.processes import ROOT
from harness.waiting import IO_TIMEOUT_S, wait_until
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

QUICK_START = readme_section("Quick start")
DOMAIN = "tunnels.example"
OPERATOR, PASSWORD = "operator", "a-long-password-for-the-newcomer-test"
ARTIFACTS = ROOT / "artifacts"
# Every stylesheet the page links from /static/ loaded and parsed (a 404 has no rules), and
# the admin's CSS took effect (the header's background is the admin's colour, not none).
STYLES_LOADED = """
const sheets = Array.from(document.styleSheets).filter(s => s.href && s.href.includes('/static/'));
const header = document.getElementById('header');
return {
  sheets: sheets.map(s => { try { return [s.href, s.cssRules.length]; } catch (e) {
    return [s.href, -1]; } }),  // a 404 page as a stylesheet: no rules to read
  header: header ? getComputedStyle(header).backgroundColor : null,
};
"""


@dataclass(frozen=True)
class Certificate:
    """certbot's two files, made by a test CA for the domain and its tunnels (and 127.0.0.1,
    the address the test's clients dial), with the CA that vouches for them."""

    ca: Path
    fullchain: Path
    privkey: Path
    spki_sha256: str  # the leaf's public key, for Chromium to trust it and nothing else


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    authority = trustme.CA()
    leaf = authority.issue_cert(DOMAIN, f"*.{DOMAIN}", "127.0.0.1")
    files = Certificate(
        tmp_path / "ca.pem", tmp_path / "fullchain.pem", tmp_path / "privkey.pem", ""
    )
    authority.cert_pem.write_to_path(str(files.ca))
    files.fullchain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.privkey))
    public = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_key()
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return Certificate(files.ca, files.fullchain, files.privkey, digest)


def production_commands(key: str, cert: Certificate) -> tuple[str, list[str]]:
    """The example's `export` line (on loopback, on a free port, the test CA's files in place
    of certbot's, no redirect port) and its commands."""
    lines = commands(fence_after(QUICK_START, "For a public relay"))
    export, rest = lines[0], lines[1:]
    export = replace(export, "SECRET_KEY=...", f"SECRET_KEY={key}")
    export = replace(export, "RELAY_BIND=0.0.0.0", "RELAY_BIND=127.0.0.1")
    export = replace(export, "RELAY_PORT=443", "RELAY_PORT=0")
    export = replace(export, "RELAY_HTTP_REDIRECT_PORT=80", "RELAY_HTTP_REDIRECT_PORT=0")
    export = replace(export, "/etc/tunnelsite/fullchain.pem", str(cert.fullchain))
    export = replace(export, "/etc/tunnelsite/privkey.pem", str(cert.privkey))
    assert export.startswith("export DEBUG=false "), export
    return export, rest


def https_get(port: int, host: str, target: str, ca: Path) -> tuple[int, bytes]:
    """GET over TLS to the relay on 127.0.0.1:`port` with Host `host`, the certificate
    checked against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=IO_TIMEOUT_S, context=context)
    try:
        conn.request("GET", target, headers={"Host": host})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.fixture
def chromium(certificate: Certificate) -> Iterator[WebDriver]:
    # tunnels.example and its tunnels are this machine: the resolver hint a test suite uses;
    # and the test CA's leaf is trusted by its public key (Chromium reads no CA file).
    with headless_chromium(
        "--window-size=1280,900",
        f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1, MAP *.{DOMAIN} 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={certificate.spki_sha256}",
    ) as browser:
        yield browser


def styled_screenshot(browser: WebDriver, name: str) -> None:
    """Save the page as artifacts/NAME.png and check its stylesheets loaded and applied."""
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    styles = browser.execute_script(STYLES_LOADED)
    assert styles["sheets"], f"{name}: no stylesheet from /static/"
    for href, rules in styles["sheets"]:
        assert rules > 0, f"{name}: {href} did not load"
    assert styles["header"] not in (None, "rgba(0, 0, 0, 0)"), f"{name}: unstyled {styles}"


def test_the_production_example_serves_a_styled_admin_and_takes_a_token(
    clone: Clone, app: int, chromium: WebDriver, certificate: Certificate
) -> None:
    clone.bootstrap()
    export, (migrate, createsuperuser, createtoken, runrelay) = production_commands(
        secrets.token_urlsafe(50), certificate
    )
    assert migrate.endswith("manage.py migrate"), migrate
    env = clone.env()
    clone.run(f"{export}; {migrate}", env)
    # createsuperuser asks for a password on the terminal; here it comes from the environment.
    superuser = clone.env(DJANGO_SUPERUSER_USERNAME=OPERATOR, DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    noinput = replace(createsuperuser, "createsuperuser", "createsuperuser --noinput")
    clone.run(f"{export}; {noinput} --email operator@example.com", superuser)
    printed = clone.run(f"{export}; {replace(createtoken, 'USERNAME', OPERATOR)}", env)
    token = re.search(r"\blt_[A-Za-z0-9_-]+", printed)
    assert token, printed

    relay = clone.start(f"{export}; {runrelay}", env, "runrelay")
    port = int(relay.wait_for_line(r"tunnelsite relay listening on https://127\.0\.0\.1:(\d+)")[1])
    relay.wait_for_line(rf"tunnels are served at https://<name>\.{re.escape(DOMAIN)}:{port}")
    site_host = f"{DOMAIN}:{port}"
    assert https_get(port, site_host, "/?new", certificate.ca)[0] == 401  # no token: refused

    # The README's `lt --host https://tunnels.example --token ...`, on this port; the test CA
    # is the one thing a real certificate would not need.
    lt = clone.start(
        f".venv/bin/lt --port {app} --host https://127.0.0.1:{port} --token {token[0]} "
        f"--ca {certificate.ca}",
        env,
        "lt",
    )
    url = lt.wait_for_line(r"your url is: (\S+)")[1]
    name = re.fullmatch(rf"https://([a-z0-9-]+)\.{re.escape(DOMAIN)}:{port}", url)
    assert name, url

    def connected() -> bool:
        status, body = https_get(port, site_host, f"/api/tunnels/{name[1]}/status", certificate.ca)
        return status == 200 and json.loads(body)["connected_sockets"] >= 1

    wait_until(connected, IO_TIMEOUT_S, f"pool connections of {name[1]}")
    assert https_get(port, f"{name[1]}.{DOMAIN}:{port}", "/", certificate.ca)[0] == 200

    site = f"https://{DOMAIN}:{port}"
    chromium.get(f"{site}/admin/login/?next=/admin/")
    styled_screenshot(chromium, "newcomer-admin-login")
    chromium.find_element(By.NAME, "username").send_keys(OPERATOR)
    chromium.find_element(By.NAME, "password").send_keys(PASSWORD)
    chromium.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(chromium, lambda b: b.find_elements(By.ID, "relay-dashboard-link"), "the admin")
    styled_screenshot(chromium, "newcomer-admin")
    chromium.find_element(By.ID, "relay-dashboard-link").click()
    wait_for(
        chromium,
        lambda b: name[1] in b.find_element(By.ID, "dashboard-tunnels").text,
        f"tunnel {name[1]} on the dashboard",
    )
    styled_screenshot(chromium, "newcomer-dashboard")
    chromium.get(url)  # the tunnel itself, through the resolver hint
    wait_for(chromium, lambda b: "Directory listing" in b.page_source, "the tunnel's page")

    assert lt.interrupt() == 0, lt.output()
    relay.interrupt()
    for job in (relay, lt):
        assert "Traceback" not in job.output(), job.output()
    assert token[0] not in relay.output(), "the relay printed the token"
