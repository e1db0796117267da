"""Headless Chromium for the browser and newcomer tests (Debian's `chromium` and
`chromium-driver`, installed by `make test`), and the one way to wait on a page."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 15.0
# Headless, and nothing that phones home or waits for the network (this machine has none).
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def headless_chromium(*flags: str) -> Iterator[WebDriver]:
    """A Chromium with a fresh profile and CHROMIUM_FLAGS plus `flags`, quit at the end."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium is not installed; `make test` installs chromium + chromium-driver")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in [*CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        browser = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        browser.set_page_load_timeout(WAIT_S)
        try:
            yield browser
        finally:
            browser.quit()


def wait_for(browser: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    """Poll the page (never sleep) until `condition` holds; fail after WAIT_S seconds.

    The dashboard swaps its fragments every 2 s, so an element found a moment ago may be
    gone (stale): that is one more poll, not a failure."""
    return WebDriverWait(
        browser,
        WAIT_S,
        poll_frequency=0.05,
        ignored_exceptions=[NoSuchElementException, StaleElementReferenceException],
    ).until(condition, f"timed out after {WAIT_S:g} s waiting for {what}")


def through_warning(browser: WebDriver) -> bool:
    """On a tunnel's warning page (an anonymous tunnel's first visit, docs/security.md's
    "Visitor access"), press Continue as a visitor would and wait for the page it leads to;
    False when the page was not the warning page. Reads what is loaded: call after `get`."""
    buttons = browser.find_elements(By.ID, "continue")
    if not buttons:
        return False
    buttons[0].click()
    wait_for(browser, lambda b: not b.find_elements(By.ID, "continue"), "the page after Continue")
    return True
