"""Open a report in headless Chromium and read what a user would see: errors, requests, layout, images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A4 at the CSS resolution (96 px per inch): 210 × 297 mm.
A4 = {"width": 794, "height": 1123}
SCREEN = {"width": 1280, "height": 800}


@dataclass
class Seen:
    """What the page did and showed."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    first_screen: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    scroll_width: int = 0
    client_width: int = 0


def look(browser: Any, report: Path, screenshot: Path | None = None, *, print_media: bool = False) -> Seen:
    """Load ``report`` at 1280 × 800 (or at A4 with the print style sheet) and collect what was seen.

    Every request other than the page itself is recorded and aborted: a self-contained page makes none.
    """
    seen = Seen()
    viewport = A4 if print_media else SCREEN
    page = browser.new_page(viewport=viewport)
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    url = report.resolve().as_uri()

    def route(r: Any) -> None:
        if r.request.url == url or r.request.url.startswith("data:"):
            r.continue_()
        else:
            seen.requests.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    if print_media:
        page.emulate_media(media="print")
    page.goto(url, wait_until="load")
    seen.first_screen = page.evaluate(
        """() => Array.from(document.querySelectorAll('.verdict'))
                 .filter(e => e.getBoundingClientRect().bottom <= window.innerHeight)
                 .map(e => e.innerText).join(' ')""")
    seen.images = page.evaluate(
        """() => Array.from(document.images).map(i => ({complete: i.complete, w: i.naturalWidth,
                 h: i.naturalHeight, right: i.getBoundingClientRect().right,
                 height: i.getBoundingClientRect().height}))""")
    seen.scroll_width = page.evaluate("document.documentElement.scrollWidth")
    seen.client_width = page.evaluate("document.documentElement.clientWidth")
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=print_media)
    page.close()
    return seen
