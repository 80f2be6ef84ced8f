"""The dashboard in a real browser: `sensor-platform dashboard` (streamlit run) on a free port over
a small platform, every page loaded in headless Chromium (Debian's, driven by Playwright, which
never downloads a browser), its rendered text checked: site names, alarm counts, no Python
exception, and ids made of markup shown as text (no element made of them, no script run)."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from sensor_platform_tests.conftest import free_port
from sensor_platform_tests.dashboard_data import HOSTILE_DEVICE, HOSTILE_SITE, build_small_platform

pytestmark = pytest.mark.integration  # a server process and a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RENDERED = "Page rendered in"  # every page's last line
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard-app")
    platform = build_small_platform(root, end=datetime.now(UTC), hours=3)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENSOR_", "AWS_"))}
    env |= {"SENSOR_DATA_DIR": str(root), "SENSOR_DASHBOARD_PORT": str(port)}
    log = open(root / "dashboard.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "sensor_platform.cli", "dashboard"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (root / "dashboard.log").read_text()
            assert time.monotonic() < deadline, "the dashboard did not start within 60 s"
            time.sleep(0.3)
        yield platform, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "chromium is needed: apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def load(browser, url: str, *cells: str) -> dict:
    """Open `url`, wait until the page has rendered (its last line, the tables holding `cells`,
    every chart drawn), and read what it shows."""
    page = browser.new_page(viewport={"width": 1400, "height": 4000})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(url)
        page.get_by_text(RENDERED).wait_for(timeout=TIMEOUT_MS)
        for cell in cells:
            page.wait_for_function(
                "text => [...document.querySelectorAll('[role=gridcell]')]"
                ".some(c => c.textContent === text)",
                arg=cell,
                timeout=TIMEOUT_MS,
            )
        # every table has drawn its cells and every chart its axes (both render after the
        # script's last line)
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=stDataFrame]')]"
            ".every(t => t.querySelector('[role=gridcell]')) && "
            "[...document.querySelectorAll('[data-testid=stVegaLiteChart]')]"
            ".every(c => c.querySelector('svg text'))",
            timeout=TIMEOUT_MS,
        )
        main = page.locator("[data-testid=stMain]")
        metrics = {
            m.locator("[data-testid=stMetricLabel]").inner_text().strip(): m.locator(
                "[data-testid=stMetricValue]"
            )
            .inner_text()
            .strip()
            for m in page.locator("[data-testid=stMetric]").all()
        }
        return {
            "text": main.inner_text(),
            "cells": page.eval_on_selector_all(
                "[role=gridcell]", "cells => cells.map(c => c.textContent)"
            ),
            "metrics": metrics,
            "exceptions": page.locator("[data-testid=stException]").count(),
            "injected": page.locator("img[src='x'], script:has-text('alert')").count(),
            "charts": page.locator("[data-testid=stVegaLiteChart]").count(),
            "dialogs": dialogs,
        }
    finally:
        page.close()


def assert_clean(shown: dict) -> None:
    assert shown["exceptions"] == 0, shown["text"]
    assert "Traceback" not in shown["text"] and "Error" not in shown["text"]
    assert shown["injected"] == 0 and shown["dialogs"] == []


def test_overview_shows_sites_and_alarm_counts(app, browser):
    platform, url = app
    shown = load(browser, url, "FAC001", "GH1-D02")
    assert_clean(shown)
    assert {"GH1", "FAC001", HOSTILE_SITE} <= set(shown["cells"])  # the id, as text
    assert shown["metrics"]["Sites"] == "3"
    assert shown["metrics"]["Devices"] == "4"
    latest = [e for e in platform.latest_episodes() if e["status"] == "open"]
    critical = sum(e["severity"] == "critical" for e in latest)
    warning = sum(e["severity"] == "warning" for e in latest)
    assert (critical, warning) == (1, 1)
    assert shown["metrics"]["Open critical alarms"] == str(critical)
    assert shown["metrics"]["Open warning alarms"] == str(warning)
    assert shown["metrics"]["Silent devices"] == "1"
    assert "GH1-D02" in shown["cells"]  # the silent one
    assert int(shown["metrics"]["Readings, last hour"].replace(",", "")) > 0


def test_explorer_draws_the_chosen_site(app, browser):
    _, url = app
    shown = load(browser, f"{url}/explorer", "device_fault")
    assert_clean(shown)
    assert "sensor_readings_minute" in shown["text"]  # six hours: minute windows
    assert shown["charts"] == 1
    assert "warning 40" in shown["text"] and "critical 60" in shown["text"]  # thresholds
    assert HOSTILE_DEVICE in shown["cells"]  # its fault episode and its latest readings
    assert "device_fault" in shown["cells"]


def test_alarms_lists_episodes_and_delivery_states(app, browser):
    platform, url = app
    shown = load(browser, f"{url}/alarms", "opened: failed", "failed")
    assert_clean(shown)
    latest = platform.latest_episodes()
    assert shown["metrics"]["Episodes"] == str(len(latest))
    assert shown["metrics"]["Open"] == "2"
    assert shown["metrics"]["Critical"] == str(sum(e["severity"] == "critical" for e in latest))
    assert shown["metrics"]["Notices sent"] == str(len(latest))
    assert {"opened: sent", "opened: failed", HOSTILE_SITE} <= set(shown["cells"])
    assert shown["charts"] == 1


def test_quality_shows_the_heat_map_and_failures(app, browser):
    _, url = app
    shown = load(browser, f"{url}/quality", "temperature_range")
    assert_clean(shown)
    assert shown["charts"] == 1
    assert {"temperature_range", "error", "warn", HOSTILE_DEVICE} <= set(shown["cells"])
    assert "validations/raw_validity" in shown["text"]  # the Data Docs page
