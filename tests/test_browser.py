"""The --serve page in a real browser (issue 22, item 6): headless Chromium, driven by
Selenium through Debian's chromedriver, against a live `pipeline run --serve --watch`.
`.ci/run` installs chromium and chromium-driver with apt where they are missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module's tests (each start is 2-3 s)."""
    tmp_path = tmp_path_factory.mktemp("browser")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(tmp_path):
    """`pipeline run edges.yaml --serve 127.0.0.1:0 --loop --watch` on a synthetic file."""
    config = tmp_path / "edges.yaml"
    config.write_text((ROOT / "configs" / "edges.yaml").read_text())
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(config), "-s", "synthetic:320x240@30:90",
         "--serve", "127.0.0.1:0", "--loop", "--watch", "-q"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = proc.stdout.readline()
    match = re.match(r"serving at (http://127\.0\.0\.1:\d+/)$", line.strip())
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    try:
        yield match.group(1), config
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err  # SIGTERM: finalised, the code of SPEC section 4
        assert "interrupted by SIGTERM" in out


def _text(driver, element: str) -> str:
    return driver.find_element(By.ID, element).text


def _picture(driver, element: str) -> np.ndarray:
    png = driver.find_element(By.ID, element).screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.timing
def test_the_page_in_chromium(browser, served):
    url, config = served
    wait = WebDriverWait(browser, 20, poll_frequency=0.1)
    browser.get(url)
    assert browser.title == "pipeline"

    # the figures update: frames counted, fps and latency shown
    wait.until(lambda d: re.fullmatch(r"\d+ / \d+", _text(d, "frames")) and
               int(_text(d, "frames").split(" / ")[1]) > 5)
    first = int(_text(browser, "frames").split(" / ")[1])
    wait.until(lambda d: int(_text(d, "frames").split(" / ")[1]) >= first + 15)
    fps_out = float(_text(browser, "fps").split(" / ")[1])
    assert 15 < fps_out < 45
    assert re.fullmatch(r"\d+\.\d ms / \d+\.\d ms", _text(browser, "latency"))
    assert "3x3" in _text(browser, "banks") and "reflect101" in _text(browser, "banks")
    assert _text(browser, "source") == "synthetic:320x240@30:90"

    # the pictures change over time: the source's moving disc, the result's edges
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('out'); return i.complete && i.naturalWidth"))
    before = _picture(browser, "out")
    time.sleep(0.7)
    after = _picture(browser, "out")
    assert before.shape == after.shape and np.abs(before.astype(int) - after).max() > 30
    assert browser.execute_script("return document.getElementById('src').naturalWidth") == 320

    # the snapshot button downloads a JPEG of the result
    browser.find_element(By.ID, "snapshot").click()
    wait.until(lambda d: [p for p in d.downloads.iterdir() if p.suffix == ".jpg"])
    (jpeg,) = [p for p in browser.downloads.iterdir() if p.suffix == ".jpg"]
    wait.until(lambda d: jpeg.stat().st_size > 0)
    image = cv2.imdecode(np.fromfile(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.shape == (240, 320)

    # pause and resume
    browser.find_element(By.ID, "pause").click()
    wait.until(lambda d: _text(d, "state") == "paused" and _text(d, "pause") == "resume")
    browser.find_element(By.ID, "pause").click()
    wait.until(lambda d: _text(d, "state") == "running")

    # a --watch edit: a 5x5 Sobel pair and a smaller output, shown on the page
    text = config.read_text().replace("size: 3}", "size: 5}").replace(
        "{name: magnitude, type: reduce, op: l2}",
        "{name: magnitude, type: reduce, op: l2}\n  - {name: half, type: resize, "
        "width: 160, height: 120}")
    config.write_text(text)
    wait.until(lambda d: "5x5" in _text(d, "banks") and _text(d, "output") == "160x120x1")
    assert "reloaded: chain #2" in _text(browser, "notes")
    assert _text(browser, "chain").startswith("#2")
    wait.until(lambda d: d.execute_script(
        "return document.getElementById('out').naturalWidth") == 160)

    # an invalid edit is shown with its place in the file; the stream goes on
    config.write_text(text.replace("op: l2", "op: l3"))
    wait.until(lambda d: "still running chain #2" in _text(d, "notes"))
    note = browser.find_element(By.CSS_SELECTOR, "#notes .error").text
    assert re.search(r"edges\.yaml:\d+:\d+: stages\[2\]", note), note
    shown = int(_text(browser, "frames").split(" / ")[1])
    wait.until(lambda d: int(_text(d, "frames").split(" / ")[1]) > shown + 10)


def test_video_files_play_their_sound_in_chromium(browser, tmp_path):
    """What a user hands on plays in a browser with its sound (issue 30, item 6): each
    output opened in Chromium plays, and its sound is decoded (webkitAudioDecodedByteCount).
    AC-3 copied into an .mp4 (--audio copy) is the control: Chromium plays it silent, which
    is why an .mp4 re-encodes it by default."""
    from media import damage_sound, write_clip

    write_clip(tmp_path / "ac3.mp4", 120, 96, 64, codec="libx264", audio="ac3")
    write_clip(tmp_path / "aac44.mkv", 120, 96, 64, audio="aac", audio_rate=44100)
    write_clip(tmp_path / "ac3.avi", 120, 96, 64, audio="ac3")
    damage_sound(tmp_path / "ac3.avi", tmp_path / "cut.avi")  # its first packet cut short
    runs = {"ac3.mp4": ("ac3.mp4", ()), "aac44.webm": ("aac44.mkv", ()),
            "cut.webm": ("cut.avi", ()), "copied.mp4": ("ac3.mp4", ("--audio", "copy"))}
    for out, (source, flags) in runs.items():
        done = subprocess.run([sys.executable, "-m", "pipeline", "run",
                               str(ROOT / "configs" / "edges.yaml"), "-s", source, "-o",
                               f"played-{out}", "-q", *flags], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    heard = {}
    for out in runs:
        page = tmp_path / f"{out}.html"
        page.write_text(f'<video id="v" src="played-{out}" autoplay muted></video>')
        browser.get(page.as_uri())
        WebDriverWait(browser, 20, poll_frequency=0.1).until(lambda d: d.execute_script(
            "return document.getElementById('v').currentTime") > 1.0)
        heard[out] = browser.execute_script(
            "const v = document.getElementById('v'); return [v.error && v.error.code, "
            "v.webkitAudioDecodedByteCount, v.webkitVideoDecodedByteCount]")
    for out in ("ac3.mp4", "aac44.webm", "cut.webm"):
        error, audio, video = heard[out]
        assert error is None and audio > 0 and video > 0, (out, heard[out])
    assert heard["copied.mp4"][1] == 0 and heard["copied.mp4"][2] > 0, heard
