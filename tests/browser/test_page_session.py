"""The phone page through a whole session: renaming mid-transfer, a socket that dies
without a word, a terminal interrupted with Ctrl-C, a session that ends well, and the
words each state shows (issue 15). Headless Chromium as a phone on a LAN sees it, the
installed ``xfer`` command, an ``xfer serve`` relay on loopback.
"""

from __future__ import annotations

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

from conftest import bounded, make_file, sha256_of

MB = 1_000_000

pytestmark = pytest.mark.timeout(180)


def open_room(page, url: str) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(url)
    page.wait_for_selector("#status[data-state=connected]")


def events_of(proc, kind: str) -> list[dict]:
    return [e for e in proc.events() if e["event"] == kind]


def receiver(xfer_procs, relay, tmp_path, *extra: str, name: str = "recv"):
    """``xfer receive`` opening a room on the relay; returns (process, the page's link on the LAN)."""
    proc = xfer_procs(
        ["receive", "--relay", relay.ws, "--json", "--no-qr", "--dir", str(tmp_path / "in"), "--name", "desk", *extra],
        name,
    )
    room = proc.first_event()
    assert room["event"] == "room"
    return proc, on_lan(room["url"])


def written(proc) -> int:
    return max((e.get("bytes", 0) for e in events_of(proc, "progress")), default=0)


def rename(page, name: str) -> None:
    page.click("#peers .me button.icon")
    page.fill("#rename-input", name)
    page.press("#rename-input", "Enter")


# -- 1. renaming yourself while a transfer runs -------------------------------------------


def test_rename_during_an_upload_waits_for_it(phone, relay, xfer_procs, tmp_path):
    """Before: the rename rejoined at once, the upload went on on the new socket and
    ``xfer receive`` stopped with "a chunk arrived out of order"."""
    src = make_file(tmp_path / "clip.mp4", 80 * MB, 3)
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.set_input_files("#pick-files", [str(src)])
    wait_until(lambda: written(recv) >= 5 * MB, 60, "5 MB written", interval=0.01)
    rename(phone, "Kitchen phone")
    said = phone.inner_text("#peers .me")
    shot(phone, "s1-rename-waits")
    assert recv.wait(60) == 0, recv.stderr
    assert sha256_of(tmp_path / "in" / "clip.mp4") == sha256_of(src)
    phone.wait_for_selector(".transfer-card .ok")
    assert phone.locator(".transfer-card .error").count() == 0
    # then the page rejoins under its new name
    wait_until(lambda: phone.inner_text("#peers .me").strip().startswith("You: Kitchen phone"), 10, "the new name")
    assert "once the transfers end" not in phone.inner_text("#peers")
    assert "Kitchen phone once the transfers end" in said


def test_rename_during_a_download_waits_for_it(phone, relay, xfer_procs, tmp_path):
    """Before: the rename cut the socket, the browser's download was cancelled and the card
    stayed at its percentage."""
    big = make_file(tmp_path / "report.bin", 80 * MB, 4)
    sender = xfer_procs(["send", str(big), "--relay", relay.ws, "--json", "--no-qr", "--name", "laptop"], "send")
    open_room(phone, on_lan(sender.first_event()["url"]))
    phone.wait_for_selector(".offer button.primary")
    with phone.expect_download(timeout=bounded(30_000)) as info:
        phone.click(".offer button.primary")
    download = info.value
    wait_until(lambda: phone.evaluate("document.querySelector('.offer progress')?.value > 0"), 30, "progress")
    rename(phone, "Kitchen phone")
    saved = tmp_path / "saved.bin"
    download.save_as(saved)
    assert download.failure() is None
    assert sha256_of(saved) == sha256_of(big)
    assert sender.wait(60) == 0, sender.stderr
    phone.wait_for_selector(".offer .ok")
    assert phone.locator(".offer .error").count() == 0
