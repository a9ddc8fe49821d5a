"""The web page at / in a real headless browser (Debian's chromium through selenium).

The API (`python -m app.api`) and the Grad-CAM sidecar run as real processes on free localhost ports,
so the overlay really comes back. Screenshots are kept in test-artifacts/.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.dicom_files import dicom_monochrome1, gray
from tests.serving import FIXTURE_JPEGS, Services, running_services

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
                  "--disable-dev-shm-usage")
PHONE = (390, 844)  # CSS pixels of a common phone
WAIT_S = 60

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium and chromedriver are not installed (run scripts/install-browser.sh, as .ci/run does)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra pins it)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def site(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    # Generous timeouts: CI machines are shared, and the overlay must really appear.
    with running_services(model_dir, tmp_path_factory.mktemp("web-logs"), gradcam_timeout_s=15,
                          sidecar_ready_s=180) as found:
        yield found


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="cxr-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={PHONE[0]},{PHONE[1]}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def upload(driver, path: Path) -> None:
    driver.find_element(By.ID, "file-input").send_keys(str(path))


def wait_for_result(driver) -> None:
    wait = WebDriverWait(driver, WAIT_S)
    wait.until(lambda d: any(d.find_element(By.ID, i).is_displayed() for i in ("result", "error")))
    error = driver.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text


def loaded(driver, element_id: str) -> bool:
    return driver.execute_script(
        "const img = document.getElementById(arguments[0]);"
        "return !img.hidden && img.complete && img.naturalWidth > 0;", element_id)


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": PHONE[0], "height": max(PHONE[1], height), "deviceScaleFactor": 2, "mobile": True})
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True})
    print(f"screenshot: {path}")
    return path


def test_a_non_chest_upload_is_its_own_state_not_a_result(site: Services, browser, tmp_path: Path) -> None:
    """Issue 14: noise is shown as "not a chest X-ray", with no label and no heat map."""
    import cv2
    import numpy as np

    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(3).integers(0, 256, (400, 400), dtype=np.uint8))
    browser.get(site.api_url + "/")
    upload(browser, noise)
    wait_for_result(browser)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "label").text != "")
    label = browser.find_element(By.ID, "label")
    assert label.text == "Not a chest X-ray"
    assert "OUT_OF_DISTRIBUTION" in label.get_attribute("class")
    assert browser.find_element(By.ID, "overlay-missing").is_displayed()


def test_upload_shows_label_probability_and_overlay(site: Services, browser, model_dir: Path) -> None:
    from app.model.card import load_model_card

    card = load_model_card(model_dir)
    browser.get(site.api_url + "/")
    WebDriverWait(browser, WAIT_S).until(EC.text_to_be_present_in_element((By.ID, "model-version"), card.version))
    assert "Not a medical device" in browser.find_element(By.ID, "disclaimer").text

    upload(browser, FIXTURE_JPEGS[1])
    wait_for_result(browser)
    WebDriverWait(browser, WAIT_S).until(lambda d: loaded(d, "overlay-img") and loaded(d, "original-img"))

    label = browser.find_element(By.ID, "label").text
    assert label in ("PNEUMONIA", "NORMAL")
    probability = float(browser.find_element(By.ID, "probability").text.rstrip("%")) / 100
    threshold = float(browser.find_element(By.ID, "threshold").text.rstrip("%")) / 100
    assert threshold == pytest.approx(card.threshold, abs=1e-3)  # shown with one decimal of a percent
    assert label == ("PNEUMONIA" if probability >= threshold else "NORMAL") or abs(probability - threshold) < 1e-3
    assert browser.find_element(By.ID, "overlay-missing").is_displayed() is False

    # The slider changes the overlay's opacity.
    browser.execute_script(
        "const s = document.getElementById('opacity'); s.value = 25; s.dispatchEvent(new Event('input'));")
    assert browser.find_element(By.ID, "overlay-img").value_of_css_property("opacity") == "0.25"
    assert browser.find_element(By.ID, "opacity-value").text == "25%"
    browser.execute_script(
        "const s = document.getElementById('opacity'); s.value = 70; s.dispatchEvent(new Event('input'));")

    # Usable on a phone: nothing wider than the screen, images side by side become stacked.
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    original = browser.find_element(By.ID, "original-img").rect
    overlay = browser.find_element(By.ID, "overlay-img").rect
    assert overlay["y"] > original["y"] and overlay["width"] <= PHONE[0]

    path = screenshot(browser, "web_page_phone.png")
    assert path.stat().st_size > 10_000


def test_dicom_upload_shows_dicom_tags(site: Services, browser, tmp_path: Path) -> None:
    dicom = tmp_path / "chest.dcm"
    dicom.write_bytes(dicom_monochrome1(gray(FIXTURE_JPEGS[0])))
    browser.get(site.api_url + "/")
    upload(browser, dicom)
    wait_for_result(browser)
    WebDriverWait(browser, WAIT_S).until(lambda d: loaded(d, "original-img"))
    assert "DICOM: DX · PA · CHEST" in browser.find_element(By.ID, "dicom-info").text
    assert browser.find_element(By.ID, "file-name").text == "chest.dcm"
    screenshot(browser, "web_page_dicom.png")


def test_bad_file_shows_a_clear_error(site: Services, browser, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an x-ray")
    browser.get(site.api_url + "/")
    upload(browser, text)
    WebDriverWait(browser, WAIT_S).until(EC.visibility_of_element_located((By.ID, "error")))
    message = browser.find_element(By.ID, "error").text
    assert "not a file type the service reads" in message and "415" in message
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_dropping_a_file_predicts_it(site: Services, browser) -> None:
    import base64

    browser.get(site.api_url + "/")
    data = base64.b64encode(FIXTURE_JPEGS[0].read_bytes()).decode("ascii")
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], arguments[1], {type: "image/jpeg"}));
        document.getElementById("drop-zone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    """, data, FIXTURE_JPEGS[0].name)
    wait_for_result(browser)
    assert browser.find_element(By.ID, "file-name").text == FIXTURE_JPEGS[0].name
    assert browser.find_element(By.ID, "label").text in ("PNEUMONIA", "NORMAL")


def test_batch_with_gradcam_returns_an_overlay_per_file(site: Services) -> None:
    """Not the page, but it needs the same running sidecar: Grad-CAM asked for on a batch."""
    import httpx

    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in FIXTURE_JPEGS]
    files.append(("files", ("notes.txt", b"not an image", "text/plain")))
    response = httpx.post(site.api_url + "/predict/batch", params={"gradcam": "true"}, files=files, timeout=60)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 415]
    assert all(r["gradcam_overlay"] and r["gradcam_layer"] for r in results[:2]), [r["warnings"] for r in results]
