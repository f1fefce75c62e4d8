"""The page in a real browser: upload a photo and speech, click Animate, see the video, the blink
table and the EAR plot. The screenshot goes to the test's temporary folder; refresh the README's
with `SPEECH_ANIM_SCREENSHOT=docs/app.png python -m pytest tests/test_app_browser.py`.

Drives Debian's Chromium (`apt-get install chromium`) through Playwright for Python.
"""

import os
from pathlib import Path

import pytest

from speech_anim.app_helpers import default_checkpoint
from test_app import PHOTO, REPO, SPEECH, serve, tiny_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    # The packaged trained model once it is installed (so docs/app.png shows real output), else a
    # tiny random one: then the face in the screenshot is a grey blob.
    checkpoint = default_checkpoint() or tiny_checkpoint(tmp_path_factory.mktemp("tiny_generator"))
    demo, url = serve(checkpoint)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        yield browser
        browser.close()


def test_upload_animate_and_see_video_blinks_and_plot(browser, page_url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(page_url)

    page.locator("#photo input[type=file]").set_input_files(str(PHOTO))
    page.locator("#speech input[type=file]").set_input_files(str(SPEECH))
    page.locator("#photo img").first.wait_for()  # the upload is shown before the button is pressed
    page.locator("#speech audio, #speech [data-testid=waveform-controls]").first.wait_for(state="attached")
    page.get_by_role("button", name="Animate").click()

    video = page.locator("#video video")
    video.wait_for()
    assert video.get_attribute("src")
    # The browser can play it: it decodes the metadata and reports the sentence's length.
    duration = page.wait_for_function(
        "() => { const v = document.querySelector('#video video'); return v && v.duration > 0 && v.duration; }"
    ).json_value()
    assert abs(duration - 3.0) < 0.1

    summary = page.locator("#blink-summary")
    for name in ("Blinks", "Blinks per second", "Mean blink duration (s)", "Median blink duration (s)"):
        assert summary.get_by_text(name, exact=True).count() >= 1
    assert summary.get_by_text("3", exact=True).count() >= 1  # the video length (s)
    for header in ("Start (s)", "End (s)"):
        assert page.locator("#blinks").get_by_text(header, exact=True).count() >= 1
    plot = page.locator("#ear-plot img")
    plot.wait_for()
    assert page.evaluate("(img) => img.naturalWidth", plot.element_handle()) > 300
    page.locator("#crop img").wait_for()
    assert "seed 0" in page.locator("#status").inner_text()

    errors = page.locator(".toast-body.error, [data-testid=toast-body]")
    assert errors.count() == 0, errors.all_inner_texts()

    # Only on request, so a test run (or a CI clone) does not rewrite the tracked docs/app.png.
    screenshot = Path(os.environ.get("SPEECH_ANIM_SCREENSHOT") or tmp_path / "app.png")
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    page.close()
