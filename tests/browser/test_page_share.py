"""The phone page while it is away and after (issue 15): a phone that sleeps mid-upload is
told what happened when it is back; a batch shows its overall progress and the tab's title
its percentage; received images get a preview; texts and files go to other apps, and the
page is an installable app with a share target. Headless Chromium as a phone on a LAN sees
it, the installed ``xfer`` command, an ``xfer serve`` relay on loopback.
"""

from __future__ import annotations

import time

import pytest
from pagekit import (  # noqa: F401
    browser,
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


def test_back_from_sleep_mid_upload_says_what_happened(phone, relay, xfer_procs, tmp_path):
    """Before: nothing said; a person back at the phone could not tell whether the upload went
    on. Now: "The phone slept for 6 s; the upload goes on." and it does."""
    src = make_file(tmp_path / "clip.mp4", 60 * MB, 21)
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.set_input_files("#pick-files", [str(src)])
    wait_until(lambda: written(recv) >= 5 * MB, 60, "5 MB written", interval=0.01)
    asleep(phone, 6)
    note = phone.locator("#away .away-text")
    note.wait_for()
    said = note.inner_text()
    assert said.startswith("The phone slept for 6 s") or said.startswith("The phone slept for 7 s"), said
    assert said.endswith("; the upload goes on."), said
    assert said in phone.inner_text("#announce")
    shot(phone, "share1-back-from-sleep")
    assert recv.wait(60) == 0, recv.stderr
    assert sha256_of(tmp_path / "in" / "clip.mp4") == sha256_of(src)
    phone.wait_for_selector(".transfer-card .ok")
    assert note.inner_text() == said  # it went on and ended well: not "finished meanwhile"
    phone.click("#away button")
    assert phone.locator("#away").count() == 0
