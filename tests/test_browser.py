"""The app as a person uses it: headless Chromium (Debian's package) driven by Playwright.

Screenshots of every stage go to tests/screenshots/ (git-ignored) for review.
"""

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from conftest import launched

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent / "screenshots"
KEPT = {"lmfn", "reblur-n1", "maxim-3s-gopro"}  # the two quickest papers' models on a CPU, and the reference
RUN_TIMEOUT_MS = 240_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)"
)


@pytest.fixture(scope="module")
def page():
    SHOTS.mkdir(exist_ok=True)
    with launched() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 720})  # a laptop screen
        page.goto(url)
        expect(page.locator("#compare-button")).to_be_visible(timeout=60_000)
        yield page
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_person_compares_two_models_looks_inside_a_paper_and_adapts(page, own_checkpoint):
    from core.registry import list_models

    shot(page, "1-opened")
    for first_view in (page.get_by_role("button", name="GoPro crowd, 640x360 (with its sharp frame)"),
                       page.locator("#compare-button")):  # both on the first screen, no scrolling
        box = first_view.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 720, box
    for name in list_models(include_reference=True):  # ticked by default: trained weights only, each saying so
        box = page.locator(f'#models input[name="{name}"]')
        if box.is_checked():
            label = box.locator("xpath=..").inner_text()
            assert "untrained" not in label and ("trained" in label or "authors' weights" in label), label
    richardson = page.get_by_label("Richardson-Lucy (classical, kernel from the sharp reference)")
    page.get_by_role("button", name="Köhler real camera shake (no reference)").click()
    expect(page.locator("#blurry img")).to_be_visible(timeout=30_000)
    expect(richardson).not_to_be_checked()  # it needs a reference: not ticked without one
    page.get_by_role("button", name="GoPro crowd, 640x360 (with its sharp frame)").click()
    expect(page.locator("#reference img")).to_be_visible(timeout=30_000)
    expect(page.locator("#blurry img")).to_be_visible()
    expect(richardson).to_be_checked()
    for name in list_models(include_reference=True):
        box = page.locator(f'#models input[name="{name}"]')
        if box.is_checked() != (name in KEPT):
            box.click()
    for name in list_models(include_reference=True):
        expect(page.locator(f'#models input[name="{name}"]')).to_be_checked(checked=name in KEPT)
    page.get_by_text("Your own checkpoint").click()  # a checkpoint of the visitor's, beside the shipped models
    page.locator("#own-checkpoint input[type=file]").set_input_files(str(own_checkpoint))
    expect(page.locator("#own-status")).to_contain_text("Added", timeout=60_000)
    expect(page.locator('#models input[name^="own:lmfn:"]')).to_be_checked()
    page.get_by_test_id("192 px-radio-label").click()
    page.locator("#compare-button").click()

    expect(page.locator("#status")).to_contain_text("Done", timeout=RUN_TIMEOUT_MS)
    gallery = page.locator("#gallery")
    for name in KEPT:
        expect(gallery).to_contain_text(name)
    expect(gallery).to_contain_text("my-lmfn.safetensors")
    assert gallery.locator("img").count() >= 7  # input, reference, baseline, two models, MAXIM and the visitor's
    expect(page.locator("#slider img")).to_have_count(2)
    expect(page.locator("#slider img").first).to_be_visible()
    expect(page.locator("#metrics")).to_contain_text("reblur-n1")
    shot(page, "2-compared")
    clipped = page.locator(".caption-label").evaluate_all(  # captions whole, not ending in an ellipsis
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)")
    assert clipped == [], clipped
    split = page.locator("#metrics th .header-content span").evaluate_all(  # one-word headers on one line
        "els => els.filter(e => !e.textContent.trim().includes(' ')).filter(e => {"
        " const r = document.createRange(); r.selectNodeContents(e); return r.getClientRects().length > 1; })"
        ".map(e => e.textContent)")
    assert split == [], split
    for panel in ("gallery", "zoom", "kernels", "errors"):  # every tile shown whole, none behind a scroll bar
        hidden = page.locator(f"#{panel}").evaluate(
            "el => [el, ...el.querySelectorAll('*')].filter(e => e.scrollHeight > e.clientHeight + 2"
            " && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY)).length")
        assert hidden == 0, panel

    page.get_by_role("tab", name="Inside the papers").click()
    page.get_by_role("tab", name="lmfn", exact=True).click()
    maps = page.locator("#maps-lmfn")
    expect(maps.locator("img").first).to_be_visible()
    assert maps.locator("img").count() >= 2  # ALFM and ACFM
    expect(page.get_by_text("ALFM attention").first).to_be_visible()
    shot(page, "3-lmfn-maps")
    page.get_by_role("tab", name="maxim-3s-gopro", exact=True).click()
    expect(page.locator("#maps-maxim-3s-gopro img").first).to_be_visible()
    expect(page.get_by_text("cross-gating block").first).to_be_visible()

    page.get_by_role("tab", name="Adapt at test time").click()
    steps = page.locator('#adapt-steps input[type="number"]')
    steps.fill("3")
    steps.press("Enter")
    page.locator("#adapt-button").click()
    expect(page.locator("#adapt-status")).to_contain_text("Done: 3 step(s)", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#adapt-curve img")).to_be_visible()
    shot(page, "4-adapted")

    page.get_by_role("tab", name="Compare").click()  # a new photo: the last photo's results go
    page.get_by_role("button", name="GoPro basketball, 640x360 (with its sharp frame)").click()
    expect(page.locator("#status")).to_contain_text("A new photo", timeout=30_000)
    expect(page.locator("#gallery img")).to_have_count(0)
    expect(page.locator("#adapt-status")).to_contain_text("A new photo")
    shot(page, "5-new-photo")
