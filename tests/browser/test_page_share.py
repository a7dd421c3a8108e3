"""The phone page while it is away and after (issue 15): a phone that sleeps mid-upload is
told what happened when it is back; a batch shows its overall progress and the tab's title
its percentage; received images get a preview; texts and files go to other apps, and the
page is an installable app with a share target. Headless Chromium as a phone on a LAN sees
it, the installed ``xfer`` command, an ``xfer serve`` relay on loopback.
"""

from __future__ import annotations

import re
import time

import pytest
from pagekit import (  # noqa: F401
    browser,
    make_png,
    on_lan,
    phone,
    playwright,
    relay,
    shot,
    wait_until,
    xfer_procs,
)
from test_page_session import open_room, receiver, written

from conftest import make_file, sha256_of

MB = 1_000_000

pytestmark = pytest.mark.timeout(180)


def asleep(page, seconds: float) -> None:
    """Stop the page's JavaScript for ``seconds``, as a phone that sleeps does: no event, no
    timer, nothing runs; the browser still holds the socket. Then let it run again."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Debugger.enable")
        cdp.send("Debugger.pause")  # at the next statement: the page's timers run every few ms
        time.sleep(seconds)
        cdp.send("Debugger.resume")
        cdp.send("Debugger.disable")
    finally:
        cdp.detach()


# What the page showed over time (polled in the page, so nothing is missed between two looks
# from the test): the tab's title and the batch's overall line.
WATCH = """
window.__seen = { titles: [], lines: [] };
setInterval(() => {
  const seen = window.__seen, title = document.title, line = document.querySelector(".overall-line")?.textContent;
  if (seen.titles.at(-1) !== title) seen.titles.push(title);
  if (line && seen.lines.at(-1) !== line) seen.lines.push(line);
}, 20);
"""
PERCENT_TITLE = re.compile(r"^(\d{1,3}) % · xfer$")


def shown_while_running(page) -> tuple[list[str], list[str]]:
    seen = page.evaluate("window.__seen")
    percents = [int(m[1]) for t in seen["titles"] if (m := PERCENT_TITLE.match(t))]
    assert any(0 < p < 100 for p in percents), seen["titles"]
    assert percents == sorted(percents), seen["titles"]  # it only goes up
    assert seen["titles"][-1] == "xfer", seen["titles"]  # and back after
    lines = seen["lines"]
    assert any(re.search(r" of .* · \d+% · about \d+ (s|min) left$", line) for line in lines), lines
    return seen["titles"], lines


def test_a_batch_upload_with_a_sleep_says_what_happened(phone, relay, xfer_procs, tmp_path):
    """Three files from the page into ``xfer receive``, and the phone sleeps in the middle.
    Before: each file had its own bar only, the title stayed "xfer", and nothing was said
    after the sleep. Now one overall bar with the time left, "NN % · xfer" in the title, and
    "The phone slept for 5 s; the upload goes on." — and it does."""
    files = [make_file(tmp_path / f"clip{i}.mp4", 15 * MB, 21 + i) for i in range(3)]
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    phone.context.add_init_script(WATCH)
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.set_input_files("#pick-files", [str(f) for f in files])
    wait_until(lambda: written(recv) >= 8 * MB, 60, "8 MB written", interval=0.01)
    asleep(phone, 5)
    note = phone.locator("#away .away-text")
    note.wait_for()
    said = note.inner_text()
    assert re.fullmatch(r"The phone slept for [5-9] s; the upload goes on\.", said), said
    assert phone.get_attribute("#away", "role") == "status"  # read out as it changes
    shot(phone, "share1-back-from-sleep")
    assert recv.wait(60) == 0, recv.stderr
    for f in files:
        assert sha256_of(tmp_path / "in" / f.name) == sha256_of(f)
    phone.wait_for_selector(".transfer-card .ok")
    phone.wait_for_timeout(100)
    shown_while_running(phone)
    assert phone.inner_text(".transfer-card .overall-line") == "All sent · SHA-256 verified"
    assert phone.title() == "xfer"
    assert note.inner_text() == said  # it went on and ended well: not "finished meanwhile"
    phone.click("#away button")
    assert phone.locator("#away").count() == 0


def test_a_batch_download_shows_its_progress_and_previews_the_image(phone, relay, xfer_procs, tmp_path):
    """``xfer send`` of a photo and two larger files to the page. Before: no overall bar, no
    percentage in the title, and nothing of the photo on the page. Now the batch's bar and time
    left, "NN % · xfer", and a preview of the photo from the bytes the page itself received
    (small images only), while every file still lands in the downloads with its hash."""
    photo = make_png(tmp_path / "sunset.png", 160)
    files = [photo, make_file(tmp_path / "one.bin", 25 * MB, 31), make_file(tmp_path / "two.bin", 25 * MB, 32)]
    sender = xfer_procs(
        ["send", *map(str, files), "--relay", relay.ws, "--json", "--no-qr", "--name", "laptop"], "send"
    )
    phone.context.add_init_script(WATCH)
    downloads = []
    phone.on("download", lambda d: downloads.append(d))
    open_room(phone, on_lan(sender.first_event()["url"]))
    phone.click(".offer button.primary")
    # poll through Playwright (not time.sleep), so that its download events are dispatched
    wait_until(lambda: phone.wait_for_timeout(100) or len(downloads) == 3, 30, "three downloads")
    by_name = {d.suggested_filename: d for d in downloads}  # the photo is saved once the page holds it whole
    assert sorted(by_name) == sorted(f.name for f in files)
    for f in files:
        saved = tmp_path / f"got-{f.name}"
        by_name[f.name].save_as(saved)
        assert sha256_of(saved) == sha256_of(f)
    assert sender.wait(30) == 0, sender.stderr
    phone.wait_for_selector(".offer .ok")
    img = phone.locator(".offer .received img.preview")
    assert img.count() == 1
    assert img.get_attribute("src").startswith("blob:")
    assert img.get_attribute("alt") == "Preview of sunset.png"
    wait_until(
        lambda: phone.evaluate("document.querySelector('img.preview').naturalWidth") == 160, 5, "the decoded photo"
    )
    shown_while_running(phone)
    assert phone.inner_text(".offer .overall-line") == "All saved · SHA-256 verified"
    # no Web Share API on a plain-http page: no Share button
    assert phone.evaluate("typeof navigator.share") == "undefined"
    assert phone.locator(".offer button.share").count() == 0
    shot(phone, "share2-batch-download-preview")
