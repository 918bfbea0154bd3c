"""The report in headless Chromium: every image renders, no console errors, nothing fetched, a real screenshot."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gdas.cli.main import main
from gdas.reporting.draw import dot_available

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                                       "chromium-driver; .ci/run installs them)")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from selenium.webdriver.chrome.service import Service
    monkeypatch.setenv("SE_OFFLINE", "1")  # never let Selenium Manager look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--window-size=1300,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, page: Path) -> list[dict]:
    """Load the page; returns its browser log (console messages)."""
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(page.resolve().as_uri())
    # get() can return before the load event on a busy machine: wait for it (up to 30 s), then check it came
    ready = lambda d: d.execute_script("return document.readyState") == "complete"  # noqa: E731
    WebDriverWait(driver, 30).until(ready, "the report never finished loading")
    assert driver.execute_script("return document.readyState") == "complete"
    return driver.get_log("browser")


def test_report_renders_offline_in_chromium(tmp_path: Path, browser) -> None:
    from PIL import Image
    run = tmp_path / "smoke"
    assert main(["search", "--preset", "smoke", "--no-progress", "--out", str(run)]) == 0
    log = open_page(browser, run / "report.html")
    assert [entry for entry in log if entry["level"] == "SEVERE"] == []

    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == (run / "report.html").read_text().count("data:image/png;base64,") >= 13
    assert all(done and width > 0 and height > 0 for done, width, height in sizes), sizes
    if dot_available():
        boxes = browser.execute_script(
            "return Array.from(document.querySelectorAll('figure.cell svg')).map(s => s.getBBox().width)")
        assert len(boxes) == 2 and min(boxes) > 0
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith("data:") for name in fetched), fetched
    assert browser.find_element("id", "run0-heatmaps").is_displayed()

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1300, min(height, 6000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.width >= 1000 and image.height >= 2000
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 200  # plots, not a blank page


def test_incomplete_banner_is_visible(tmp_path: Path, browser) -> None:
    run = tmp_path / "killed"
    run.mkdir()
    (run / "config.json").write_text('{"kind": "search", "config": {"epochs": 3}, "env": {"torch": "2"}}')
    (run / "metrics.jsonl").write_text('{"epoch": 0, "tau": 10.0, "train_loss": 2.3, "valid_acc": 0.1}\n{"ep')
    assert main(["report", str(run)]) == 0
    log = open_page(browser, run / "report.html")
    assert [entry for entry in log if entry["level"] == "SEVERE"] == []
    banner = browser.find_element("id", "incomplete")
    assert banner.is_displayed() and "INCOMPLETE" in banner.text and "torn line" in banner.text
    widths = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert widths and min(widths) > 0
