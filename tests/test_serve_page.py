"""``audiocls serve``'s page in a real browser (issue 27): headless Chromium through Selenium uploads a clip and
sees the labels the API gives, and the saliency image.

Needs ``selenium`` and Debian's ``chromium`` + ``chromium-driver``; ``.ci/run`` installs them when missing, and
without them this test is skipped with the reason in pytest's summary. ``AUDIOCLS_SERVE_SCREENSHOT=docs/serve_page.png``
keeps the screenshot (the one in docs/ was made so).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from tests.test_after_fit import fitted  # noqa: F401
from tests.test_predict import noise
from tests.test_serve import SR, httpx, server  # noqa: F401

pytestmark = pytest.mark.slow

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no chromium or chromedriver on PATH (Debian: apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,1200"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))  # the system's driver: nothing downloads
    yield driver
    driver.quit()


def test_the_page_shows_the_labels_of_an_uploaded_clip_and_its_saliency(server, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    clip = tmp_path / "clip.wav"
    sf.write(clip, noise(1.0, SR, seed=3), SR)
    want = httpx.post(f"{url}/predict", content=clip.read_bytes(), timeout=60).json()
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "classes"))
    browser.find_element(By.ID, "file").send_keys(str(clip))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#result .row")))
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#result .row .label")]
    assert labels == [t["label"] for t in want["top"]]
    wait.until(EC.visibility_of_element_located((By.ID, "saliency")))
    wait.until(lambda d: d.execute_script("return document.getElementById('saliency').naturalWidth") > 0)
    shot = Path(os.environ.get("AUDIOCLS_SERVE_SCREENSHOT") or tmp_path / "serve_page.png")
    assert browser.save_screenshot(str(shot.resolve())) and shot.stat().st_size > 10_000
