"""The console in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
Selenium) against a running proxy with a seeded store. It looks a refused number up and sees the rule and its
reason, opens an account's report and finds its charts drawn, logs in with a token and releases a held message
through its confirmation, and takes the screenshots the README shows.

The proxy's clock is 23:00 in Shanghai, so marketing is held (quiet hours). Screenshots go to the test's temporary
folder, and also to $SMPPGUARD_SCREENSHOTS when it names one (`docs/console` refreshes the README's).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from console_helpers import POLICY, WRITE_TOKEN, Sender, console_config, serve, stop

from helpers import Stack, rows, wait_for
from smppguard.smpp.status import Status
from smppguard.store.db import connect

pytestmark = pytest.mark.browser

NIGHT = datetime(2026, 11, 27, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
HOLDING = POLICY.replace("[rules.quiet_hours]\nenabled = false", '[rules.quiet_hours]\naction = "hold"')
REFUSED = "13800138000"
DAY = 86400.0


def _browser_or_skip() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        try:
            import selenium  # noqa: F401
        except ImportError:
            pass
        else:
            return chromium, driver
    if os.environ.get("SMPPGUARD_REQUIRE_CHROMIUM"):
        pytest.fail("headless Chromium is needed: Debian's chromium and chromium-driver, and selenium (test extras)")
    pytest.skip("no chromium / chromedriver / selenium (scripts/run-tests installs them)")


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The proxy, store and console; a blacklisted number, a week of an account's traffic, held messages."""
    tmp = tmp_path_factory.mktemp("console")
    path = tmp / "guard.db"
    with Stack(console_config(tmp, HOLDING), store=True, clock=Clock(NIGHT)) as stack:
        served = serve(stack, path)
        try:
            got = served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN,
                              json_body={"number": REFUSED, "source": "complaint", "reason": "10086 complaint"})
            assert got.status == 201
            wait_for(lambda: 8613800138000 in stack.store.screening.index.blacklist, what="the blacklist")
            db = connect(path)  # a week of accepted sends, as the proxy records them
            db.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)",
                           [(8613900000000 + i, "acme", NIGHT - (i % 6 + 1) * DAY - i) for i in range(40)])
            db.close()
            sender = Sender(stack)
            try:
                assert sender.submit("ACME", 8613800138000) == Status.RSUBMITFAIL  # blacklisted
                for i in range(3):
                    assert sender.submit("ACME", 8613700000001 + i) == Status.ROK  # held: 23:00 in Shanghai
            finally:
                sender.close()
            wait_for(lambda: rows(path, "SELECT COUNT(*) FROM held")[0][0] == 3, what="three held messages")
            wait_for(lambda: rows(path, "SELECT COUNT(*) FROM audit WHERE actor = ''")[0][0] >= 2,
                     what="the refusal and the holds audited")
            yield served
        finally:
            stop(served)


def text_of(driver, by: str, value: str) -> str:
    """The element's text, or "" while the page is being replaced (a click that navigates returns before the new
    page is there, and an element found on the old one goes stale)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return driver.find_element(by, value).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def shoot(driver, name: str, tmp_path: Path, width: int = 1280) -> Path:
    """A screenshot of the whole page at `width`, into tmp_path and $SMPPGUARD_SCREENSHOTS."""
    driver.set_window_size(width, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height, 400), 4000) + (0 if width > 600 else 0))
    shot = tmp_path / f"{name}.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 5000  # a page, not a blank
    keep = os.environ.get("SMPPGUARD_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    driver.set_window_size(1280, 900)
    return shot


def test_console_browser_looks_a_refused_number_up_and_sees_the_rule_and_reason(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/console/")
    box = browser.find_element(By.CSS_SELECTOR, "main input[name=q]")
    box.send_keys(REFUSED)
    box.submit()
    verdict = wait_for(lambda: text_of(browser, By.ID, "verdict"), what="the number's page")
    assert verdict == "REJECT by blacklist: number is blacklisted (status 0x45)"
    rules = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
             for r in browser.find_elements(By.CSS_SELECTOR, "#rules tr")[1:]}
    assert rules["blacklist"] == "reject" and rules["invalid"] == "pass"
    lists = browser.find_element(By.ID, "lists").text
    assert "complaint: 10086 complaint" in lists
    assert "by crm" in lists  # the API token's name is the actor
    audit = browser.find_element(By.ID, "audit").text
    assert "blacklist reject 0x45" in audit
    shoot(browser, "console-number", tmp_path)
    shoot(browser, "console-number-phone", tmp_path, width=390)
    assert fits_a_phone(browser)


def fits_a_phone(driver) -> bool:
    """At a phone's width (390 CSS pixels) the page needs no sideways scrolling: wide tables scroll in their box."""
    driver.set_window_size(390, 844)
    try:
        return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        driver.set_window_size(1280, 900)


def test_console_browser_opens_a_report_and_finds_the_charts_drawn(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/console/")
    browser.find_element(By.LINK_TEXT, "acme").click()
    figures = wait_for(lambda: text_of(browser, By.ID, "figures"), what="the report")
    assert browser.current_url.endswith("/console/accounts/acme")
    assert "sent\n40" in figures and "held\n3" in figures and "refused\n1" in figures
    chart = browser.find_element(By.CSS_SELECTOR, "svg[data-chart=days]")
    drawn = browser.execute_script(
        "return Array.from(arguments[0].querySelectorAll('rect[class^=bar-]')).map(r => {"
        "const b = r.getBoundingClientRect(); return [r.getAttribute('class'), b.width, b.height]; })", chart)
    assert {c for c, w, h in drawn if w > 2 and h > 1} == {"bar-sent", "bar-held", "bar-refused"}
    assert chart.size["width"] > 300 and chart.size["height"] > 100
    rules = browser.find_element(By.CSS_SELECTOR, "svg[data-chart=rules]")
    assert rules.find_element(By.CSS_SELECTOR, "rect.bar-rule").size["width"] > 10
    assert "blacklist" in rules.text
    shoot(browser, "console-report", tmp_path)
    assert fits_a_phone(browser)


def test_console_browser_logs_in_and_releases_a_held_message_with_its_confirmation(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/console/queue")
    assert "Log in with a token that may write" in browser.page_source
    assert not browser.find_elements(By.LINK_TEXT, "release")  # read-only: nothing to click
    browser.get(site.url + "/console/login")
    browser.find_element(By.ID, "token").send_keys(WRITE_TOKEN)
    browser.find_element(By.ID, "login").click()
    wait_for(lambda: "crm (write)" in text_of(browser, By.TAG_NAME, "header"), what="logged in")
    browser.get(site.url + "/console/queue")
    held = browser.find_elements(By.CSS_SELECTOR, "#queue tr[data-id]")
    assert len(held) == 3
    message_id = held[0].get_attribute("data-id")
    assert "+86137" in held[0].text  # a write token sees the number in full
    shoot(browser, "console-queue", tmp_path)
    held[0].find_element(By.LINK_TEXT, "release").click()
    wait_for(lambda: f"Message {message_id}" in text_of(browser, By.TAG_NAME, "main"), what="the confirmation")
    assert rows(site.path, "SELECT forced FROM held WHERE id = ?", message_id) == [(0,)]  # not before the confirm
    shoot(browser, "console-release", tmp_path)
    browser.find_element(By.ID, "confirm").click()
    done = wait_for(lambda: text_of(browser, By.ID, "done"), what="the release done")
    assert done.startswith(f"Released {message_id} (1 part)")
    released = rows(site.path, "SELECT forced FROM held WHERE id = ?", message_id)
    assert released in ([(1,)], [])  # released by hand (or already sent through a bind)
    others = rows(site.path, "SELECT forced FROM held WHERE id != ?", message_id)
    assert others == [(0,), (0,)]
    asked = rows(site.path, "SELECT reason FROM audit WHERE action = 'release-asked' AND actor = 'crm'")
    assert asked == [(f"released by hand; proxy id {message_id}",)]  # who released it, in the audit log


def test_console_browser_tests_fail_instead_of_skipping_where_chromium_must_be(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("SMPPGUARD_REQUIRE_CHROMIUM", "1")
    with pytest.raises(pytest.fail.Exception, match="headless Chromium is needed"):
        _browser_or_skip()
    monkeypatch.delenv("SMPPGUARD_REQUIRE_CHROMIUM")
    with pytest.raises(pytest.skip.Exception):
        _browser_or_skip()

