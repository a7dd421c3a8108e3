"""Issue 15: the page with large text and at 200 % zoom, its multi-line text box, and its
accessibility, checked with axe-core (from npm, pinned in package-lock.json here and
installed by scripts/test-setup) and with contrast measured on the focus ring and the
field borders in both themes. Screenshots go to test-artifacts/browser/ (not committed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pagekit import (  # noqa: F401
    browser,
    on_lan,
    phone,
    playwright,
    relay,
    shot,
    wait_until,
    xfer_procs,
)

from conftest import make_file

MB = 1_000_000
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
LONG_NAME = "IMG_20240611_183012_the_whole_family_at_the_lake_before_the_storm.jpg"

pytestmark = pytest.mark.timeout(120)


def open_room(page, url: str, width: int = 360) -> None:
    page.set_viewport_size({"width": width, "height": 740})
    page.goto(url)
    page.wait_for_selector("#status[data-state=connected]")


def events_of(proc, kind: str) -> list[dict]:
    return [e for e in proc.events() if e["event"] == kind]


def receiver(xfer_procs, relay, tmp_path):
    proc = xfer_procs(
        ["receive", "--relay", relay.ws, "--yes", "--json", "--no-qr", "--dir", str(tmp_path / "in"), "--name", "desk"],
        "recv",
    )
    room = proc.first_event()
    return proc, on_lan(room["url"])


def offering(xfer_procs, relay, tmp_path, *paths: Path):
    """``xfer send`` of ``paths``, waiting for a receiver; returns (process, the page's link)."""
    proc = xfer_procs(["send", *map(str, paths), "--relay", relay.ws, "--json", "--no-qr", "--name", "desk"], "send")
    return proc, on_lan(proc.first_event()["url"])


def font_size(page, px: int) -> None:
    """The browser's default font size (Settings › Appearance › Font size), as a person who
    needs large text sets it: the page must follow it. (Chromium forgets it when the viewport
    changes, full-page screenshots included: see ``large_shot``.)"""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Page.setFontSizes", {"fontSizes": {"standard": px, "fixed": px}})
    cdp.detach()


def large_shot(page, name: str, px: int) -> None:
    """A screenshot of the whole page at the font size ``px``: a viewport as tall as the page."""
    width = page.viewport_size["width"]
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": width, "height": height})
    font_size(page, px)
    page.set_viewport_size({"width": width, "height": page.evaluate("document.documentElement.scrollHeight")})
    font_size(page, px)
    shot(page, name, full_page=False)


# -- 1. large text and 200 % zoom -----------------------------------------------------------

LAYOUT = """() => {
  const shown = (e) => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden';
  const out = {overflow: [], split: [], names: [],
               width: document.documentElement.scrollWidth};
  for (const b of document.querySelectorAll('button, label.button')) {
    if (!shown(b)) continue;
    if (b.scrollWidth > b.clientWidth + 1) out.overflow.push(b.textContent.trim());
    // a word drawn on two lines: its range has boxes at two heights
    const walker = document.createTreeWalker(b, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      for (const m of t.data.matchAll(/\\S+/g)) {
        const r = document.createRange();
        r.setStart(t, m.index);
        r.setEnd(t, m.index + m[0].length);
        const tops = new Set([...r.getClientRects()].filter((x) => x.width > 0).map((x) => Math.round(x.top)));
        if (tops.size > 1) out.split.push(m[0]);
      }
    }
  }
  // how many characters of each file name can be seen (the rest is behind an ellipsis)
  for (const n of document.querySelectorAll('.name')) {
    if (!shown(n)) continue;
    let seen = 0;
    for (const part of n.children) {
      const box = part.getBoundingClientRect();
      const text = part.firstChild;
      if (!text) continue;
      for (let i = 0; i < text.data.length; i++) {
        const r = document.createRange();
        r.setStart(text, i);
        r.setEnd(text, i + 1);
        const c = r.getBoundingClientRect();
        if (c.width > 0 && c.right <= box.right + 0.5 && c.bottom <= box.bottom + 0.5) seen += 1;
      }
    }
    out.names.push([n.getAttribute('title') || n.textContent, seen]);
  }
  return out;
}"""


def check_layout(page, width: int) -> None:
    got = page.evaluate(LAYOUT)
    assert got["width"] <= width, f"the page scrolls sideways: {got['width']} px in {width}"
    assert not got["overflow"], f"button text wider than its button: {got['overflow']}"
    assert not got["split"], f"words broken across lines in buttons: {got['split']}"
    assert got["names"], "no file names on screen"
    for name, seen in got["names"]:
        assert seen >= min(len(name), 16), f"only {seen} characters of {name!r} show"


def test_large_text_and_200_percent_zoom(phone, relay, xfer_procs, tmp_path):
    """Before: the root font was pinned at 16 px, "Accept" broke mid-word at 320 px and long
    names shrank to a few characters. A 320-px viewport is a 640-px phone at 200 % zoom; with
    a 32-px default font on top, every word of every button stays whole, nothing scrolls
    sideways, and a long name shows at least 16 characters (its start and its end)."""
    src = make_file(tmp_path / LONG_NAME, 20_000, 1)
    sender, url = offering(xfer_procs, relay, tmp_path, src)
    open_room(phone, url, width=320)
    font_size(phone, 32)
    phone.wait_for_selector(".offer button.primary")
    assert phone.evaluate("getComputedStyle(document.documentElement).fontSize") == "32px", "pinned font size"
    check_layout(phone, 320)
    large_shot(phone, "a1-offer-320px-large-text", 32)
    phone.emulate_media(color_scheme="dark")
    large_shot(phone, "a1-offer-320px-large-text-dark", 32)
    phone.emulate_media(color_scheme="light")
    phone.set_viewport_size({"width": 320, "height": 740})
    font_size(phone, 16)  # 200 % zoom alone
    check_layout(phone, 320)
    shot(phone, "a1-offer-320px-zoom-200")
    # the full name is on the page, for a screen reader and on tap
    full = phone.locator(".offer .name").first
    assert full.text_content() == LONG_NAME and full.get_attribute("title") == LONG_NAME
    full.click()
    check = phone.evaluate(
        "() => { const h = document.querySelector('.offer .name .head'); return h.scrollWidth <= h.clientWidth; }"
    )
    assert check, "a tap does not show the whole name"
