"""The README's screenshot: the app comparing every model on the 1280x720 GoPro example at its default settings.

    python benchmarks/app_screenshot.py [--out assets/app-screenshot.png]

Starts ``python app.py``, drives it in Debian's headless Chromium through Playwright as a person would (click the
example, press Compare, wait for every model), and saves the top of the page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app_latency import ROOT, free_port, start_app

CHROMIUM = "/usr/bin/chromium"
EXAMPLE = "GoPro market, 1280x720 (with its sharp frame)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "app-screenshot.png")
    parser.add_argument("--height", type=int, default=1300, help="pixels of the page kept, from the top")
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    process, _ = start_app(port)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": args.height})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("button", name=EXAMPLE).click()
            expect(page.locator("#reference img")).to_be_visible(timeout=60_000)
            page.locator("#compare-button").click()
            expect(page.locator("#status")).to_contain_text("Done", timeout=900_000)
            page.screenshot(path=str(args.out), clip={"x": 0, "y": 0, "width": 1400, "height": args.height})
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
