"""A screenshot of a running live page (GET /live of `txmon api`) in Debian's headless
Chromium, for the README:

    make demo        # the services keep running after it ends
    .venv/bin/python scripts/live_screenshot.py --out docs/live-page.png
    make down

It waits until the page has drawn minutes (and, with --incident, an incident or an alert
record), so the picture is never of an empty page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def main() -> int:
    port = os.environ.get("TXMON_API_PORT", "8000")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=f"http://127.0.0.1:{port}/live")
    p.add_argument("--out", type=Path, default=Path("docs/live-page.png"))
    p.add_argument("--min-points", type=int, default=10, help="minutes drawn before the shot")
    p.add_argument("--no-incident", dest="incident", action="store_false",
                   help="do not wait for an alert record")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for data")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(args.url)
        ms = args.timeout * 1000
        page.wait_for_function(f"Number(document.body.dataset.points) >= {args.min_points}",
                               timeout=ms)
        if args.incident:
            page.wait_for_selector("#alerts tr.alert", timeout=ms)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
