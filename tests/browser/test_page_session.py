"""The phone page through a whole session: renaming mid-transfer, a socket that dies
without a word, a terminal interrupted with Ctrl-C, a session that ends well, and the
words each state shows (issue 15). Headless Chromium as a phone on a LAN sees it, the
installed ``xfer`` command, an ``xfer serve`` relay on loopback.
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import threading
import time

import pytest
from pagekit import (  # noqa: F401
    LAN_HOST,
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


def receiver(xfer_procs, relay, tmp_path, *extra: str, name: str = "recv", **kw):
    """``xfer receive`` opening a room on the relay; returns (process, the page's link on the LAN)."""
    proc = xfer_procs(
        ["receive", "--relay", relay.ws, "--json", "--no-qr", "--dir", str(tmp_path / "in"), "--name", "desk", *extra],
        name,
        **kw,
    )
    room = proc.first_event()
    assert room["event"] == "room"
    return proc, on_lan(room["url"])


def builtin_receiver(xfer_procs, tmp_path):
    """``xfer receive --yes`` with the relay inside it, as on a LAN with no ``--relay``."""
    args = ["--host", "127.0.0.1", "--yes", "--json", "--no-qr", "--dir", str(tmp_path / "in"), "--name", "desk"]
    return xfer_procs(["receive", *args], "recv")


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


# -- 2. a socket that dies without a word ---------------------------------------------------


class FreezableProxy:
    """A TCP proxy on 127.0.0.1 in front of the relay that can stop forwarding without closing
    anything: what a phone sees when its Wi-Fi goes away (no FIN, no RST, just silence)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.frozen = threading.Event()
        self.closing = threading.Event()
        self.sockets: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while not self.closing.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.closing.set()
        self.server.close()
        for s in self.sockets:
            s.close()


def test_a_socket_that_dies_silently_shows_offline(phone, relay, xfer_procs, tmp_path):
    """Before: "Connected" and a frozen percentage for as long as the browser kept the dead
    socket (minutes). Now the page hears nothing for DEAD_AFTER (10 s), says it is offline,
    ends the download with a message, and is back once the network is."""
    big = make_file(tmp_path / "report.bin", 100 * MB, 5)
    sender = xfer_procs(["send", str(big), "--relay", relay.ws, "--json", "--no-qr", "--name", "laptop"], "send")
    fragment = sender.first_event()["url"].split("#", 1)[1]
    proxy = FreezableProxy(relay.port)
    try:
        open_room(phone, f"http://{LAN_HOST}:{proxy.port}/#{fragment}")
        phone.wait_for_selector(".offer button.primary")
        with phone.expect_download(timeout=bounded(30_000)):
            phone.click(".offer button.primary")
        wait_until(lambda: phone.evaluate("document.querySelector('.offer progress')?.value > 0"), 30, "progress")
        proxy.frozen.set()
        frozen_at = time.monotonic()
        phone.wait_for_selector("#status:not([data-state=connected])", timeout=bounded(14_000))
        assert time.monotonic() - frozen_at < 14
        phone.wait_for_selector(".offer .error")
        assert "Connected" not in phone.inner_text("#status")
        shot(phone, "s2-socket-died")
        proxy.frozen.clear()
        phone.wait_for_selector("#status[data-state=connected]", timeout=bounded(20_000))
    finally:
        proxy.close()


# -- 3. Ctrl-C on the terminal while the page uploads fast -----------------------------------


@pytest.mark.parametrize("builtin", [False, True], ids=["xfer-serve", "built-in-relay"])
def test_ctrl_c_on_xfer_receive_during_an_upload_is_prompt(phone, relay, xfer_procs, tmp_path, builtin):
    """Before: about 10 s from SIGINT to exit while the page kept sending. Now within ~2 s,
    exit 130, the partial file kept (docs/cli.md: Ctrl-C keeps it, unless --no-resume)."""
    src = make_file(tmp_path / "clip.mp4", 160 * MB, 6)
    if builtin:  # the relay runs inside xfer receive itself, as on a LAN with no --relay
        recv = builtin_receiver(xfer_procs, tmp_path)
        url = on_lan(recv.first_event()["url"])
    else:
        recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.set_input_files("#pick-files", [str(src)])
    wait_until(lambda: written(recv) >= 20 * MB, 60, "20 MB written", interval=0.01)
    recv.proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    code = recv.wait(30)
    took = time.monotonic() - started
    assert code == 130, recv.stderr
    assert took < 2.0, f"xfer receive took {took:.1f} s to stop"
    assert "Traceback" not in recv.stderr
    partial = [p for p in (tmp_path / "in").iterdir() if p.name.startswith(".")]
    assert partial, "Ctrl-C keeps the partial file"
    assert not (tmp_path / "in" / "clip.mp4").exists()
    # and the page says it: not a frozen bar
    phone.wait_for_selector(".transfer[data-state=resuming], .transfer-card .error")


# -- 4. a session that ended well --------------------------------------------------------------


def test_a_session_that_ended_well_says_so(phone, xfer_procs, tmp_path):
    """``xfer receive`` with its own relay takes a file from the page and exits. Before: a red
    "Offline · retry in N s" for two minutes, then "Room closed". Now: finished, and who left."""
    src = make_file(tmp_path / "note.bin", 2 * MB, 7)
    recv = builtin_receiver(xfer_procs, tmp_path)
    open_room(phone, on_lan(recv.first_event()["url"]))
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.set_input_files("#pick-files", [str(src)])
    assert recv.wait(30) == 0, recv.stderr
    phone.wait_for_selector("#status[data-state=finished]", timeout=bounded(5_000))
    phone.wait_for_timeout(1500)  # and it stays so: no countdown, no retry
    assert phone.get_attribute("#status", "data-state") == "finished"
    assert phone.inner_text("#status-text") == "Finished"
    assert phone.is_hidden("#retry")
    assert "desk (xfer) finished and left" in phone.inner_text("#peers-hint")
    shot(phone, "s4-finished")


def test_a_terminal_that_finished_and_left_a_hosted_relay_is_named(phone, relay, xfer_procs, tmp_path):
    """On ``xfer serve`` the room stays open around the page: it says who finished and left,
    not that nobody is here yet."""
    src = make_file(tmp_path / "note.bin", 1 * MB, 8)
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.set_input_files("#pick-files", [str(src)])
    assert recv.wait(30) == 0, recv.stderr
    wait_until(lambda: "finished and left" in phone.inner_text("#peers-hint"), 5, "the end said")
    assert "desk (xfer) finished and left" in phone.inner_text("#peers-hint")
    assert "Nobody else is here yet" not in phone.inner_text("#peers-hint")


# -- 5. words that match what happens ------------------------------------------------------------


def test_words_while_the_terminal_asks_and_when_it_is_busy(browser, playwright, phone, relay, xfer_procs, tmp_path):
    """``xfer receive`` asks y/n: the page says it waits for that answer (before: "Waiting…").
    A second phone that sends meanwhile is told the receiver is busy (before: "declined")."""
    src = make_file(tmp_path / "photo.jpg", 1 * MB, 9)
    answer, terminal = pty.openpty()  # xfer asks only a terminal
    recv, url = receiver(xfer_procs, relay, tmp_path, "--open", stdin=terminal)
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.set_input_files("#pick-files", [str(src)])
    wait_until(lambda: events_of(recv, "offer"), 10, "the offer at xfer receive")
    assert phone.inner_text(".transfer .status-line") == "Waiting for desk (xfer) to accept…"
    shot(phone, "s5-waiting-for-answer")
    context = browser.new_context(**playwright.devices["Pixel 7"])
    try:
        other = context.new_page()
        open_room(other, url)
        wait_until(lambda: "desk" in other.inner_text("#peers"), 10, "the receiver, on the second phone")
        other.set_input_files("#pick-files", [str(src)])
        other.wait_for_selector(".transfer-card .error")
        said = other.inner_text(".transfer-card .error")
        assert "desk is busy with another transfer" in said and "declined" not in said, said
        assert other.locator(".transfer-card button.again").count() == 1  # the room is still there
        shot(other, "s5-busy")
    finally:
        context.close()
    os.write(answer, b"y\n")
    try:
        assert recv.wait(30) == 0, recv.stderr
    finally:
        os.close(answer)
        os.close(terminal)
    phone.wait_for_selector(".transfer-card .ok")


def test_no_try_again_once_the_room_is_gone(phone, xfer_procs, tmp_path):
    """``xfer receive`` with its own relay stops mid-upload: the room went with it, so the page
    says so and what to do, with no "Try again" and no countdown (before: both)."""
    src = make_file(tmp_path / "clip.mp4", 120 * MB, 10)
    recv = builtin_receiver(xfer_procs, tmp_path)
    open_room(phone, on_lan(recv.first_event()["url"]))
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.set_input_files("#pick-files", [str(src)])
    wait_until(lambda: written(recv) >= 10 * MB, 60, "10 MB written", interval=0.01)
    recv.proc.send_signal(signal.SIGINT)
    assert recv.wait(10) == 130, recv.stderr
    phone.wait_for_selector(".transfer-card .error", timeout=bounded(10_000))
    phone.wait_for_selector("#status[data-state=closed]")
    assert phone.inner_text("#status-text") == "Room closed"
    assert phone.is_hidden("#retry")
    assert phone.locator("button.again, button:text('Try again')").count() == 0
    assert "scan its new QR code" in phone.inner_text(".transfer-card")
    assert "Nobody is here any more" in phone.inner_text("#peers-hint")
    shot(phone, "s5-room-gone")


def test_a_second_phone_is_told_the_files_went_to_another(browser, playwright, phone, relay, xfer_procs, tmp_path):
    """``xfer send`` gives its files to one receiver: a second phone in the room is told they
    went to another device (before: nothing, then "Nobody else is here yet")."""
    big = make_file(tmp_path / "report.bin", 60 * MB, 11)
    sender = xfer_procs(["send", str(big), "--relay", relay.ws, "--json", "--no-qr", "--name", "laptop"], "send")
    url = on_lan(sender.first_event()["url"])
    open_room(phone, url)
    phone.wait_for_selector(".offer button.primary")
    context = browser.new_context(**playwright.devices["Pixel 7"])
    try:
        other = context.new_page()
        open_room(other, url)
        wait_until(lambda: "laptop" in other.inner_text("#peers"), 10, "the sender, on the second phone")
        wait_until(
            lambda: "laptop (xfer) is sending its files to another device" in other.inner_text("#peers-hint"),
            6,
            "the second phone told",
        )
        shot(other, "s5-sending-elsewhere")
        with phone.expect_download(timeout=bounded(30_000)) as info:
            phone.click(".offer button.primary")
        info.value.save_as(tmp_path / "saved.bin")
        assert sender.wait(30) == 0, sender.stderr
        wait_until(
            lambda: (
                "laptop (xfer) sent its files to another device in this room and left"
                in other.inner_text("#peers-hint")
            ),
            10,
            "the second phone told it is over",
        )
        assert other.locator(".offer").count() == 0
    finally:
        context.close()


def text_sender(xfer_procs, *extra: str):
    """``xfer send --text`` opening a room (on ``extra``'s relay, else its own) as laptop."""
    args = ["send", "--text", "see you at 5", "--json", "--no-qr", "--name", "laptop", *extra]
    return xfer_procs(args, f"text-{time.monotonic_ns()}")


@pytest.mark.parametrize("builtin", [False, True], ids=["hosted", "builtin"])
def test_a_text_sender_that_came_and_went_is_named(phone, relay, xfer_procs, builtin):
    """``xfer send --text`` gives the page its text and leaves. Before: "Nobody else is here
    yet" (hosted relay) or "Room closed" and "Nobody is here any more" (its own relay); now who
    sent a text and left, and with its own relay the session is over: "Finished"."""
    sender = text_sender(xfer_procs, *(["--host", "127.0.0.1"] if builtin else ["--relay", relay.ws]))
    phone.set_viewport_size({"width": 360, "height": 740})
    phone.goto(on_lan(sender.first_event()["url"]))  # not open_room: "Connected" may be over before it looks
    phone.locator(".bubble:not(.mine)").first.wait_for()
    assert sender.wait(30) == 0, sender.stderr
    wait_until(lambda: "left" in phone.inner_text("#peers-hint"), 5, "the sender's leaving said")
    hint = phone.inner_text("#peers-hint")
    assert "laptop (xfer) sent a text and left" in hint and "Nobody" not in hint, hint
    if builtin:
        phone.wait_for_selector("#status[data-state=finished]")
    shot(phone, f"s5-texted-and-left-{'builtin' if builtin else 'hosted'}")


def test_a_terminal_that_left_is_named_not_awaited(phone, relay, xfer_procs, tmp_path):
    """``xfer receive`` opened the room on the relay and is stopped before any transfer: the room
    stays around the page, which says who left (before: "Nobody else is here yet")."""
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    recv.proc.send_signal(signal.SIGINT)
    recv.wait(10)
    wait_until(lambda: "left" in phone.inner_text("#peers-hint"), 5, "the leaving said")
    hint = phone.inner_text("#peers-hint")
    assert "desk (xfer) left" in hint and "yet" not in hint, hint
    shot(phone, "s5-left")


def test_a_page_replaced_by_another_tab_says_where_it_went(phone, relay, xfer_procs, tmp_path):
    """A tab with the same session (a duplicated tab) takes the room over: the first says it is
    open in the other tab and how to bring it back. Before: "Offline: who is here shows again…"."""
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    open_room(phone, url)
    session = phone.evaluate("sessionStorage.getItem('xfer-session')")
    other = phone.context.new_page()
    other.add_init_script(f"sessionStorage.setItem('xfer-session', '{session}')")
    open_room(other, url)
    phone.wait_for_selector("#status[data-state=closed]")
    hint = phone.inner_text("#peers-hint")
    assert "open in another tab" in hint and "Offline" not in hint, hint
    assert phone.inner_text("#status-text") == "Open in another tab" and phone.is_visible("#retry")
    shot(phone, "s5-replaced")


def test_another_room_in_the_address_starts_clean(phone, relay, xfer_procs, tmp_path):
    """A new link in the address (the # changes): the page joins that room, and what it showed
    of the first one (its texts, who left it) goes. Before: the first room's texts stayed."""
    first = text_sender(xfer_procs, "--relay", relay.ws)
    open_room(phone, on_lan(first.first_event()["url"]))
    phone.locator(".bubble:not(.mine)").first.wait_for()
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    phone.evaluate("(h) => { location.hash = h; }", url.split("#", 1)[1])
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the second room's receiver")
    assert phone.locator(".bubble").count() == 0
    assert "laptop" not in phone.inner_text("#room")
    assert phone.inner_text("#room-code") == url.split("#", 1)[1].split(".")[0]
    shot(phone, "s5-another-room")


def test_another_room_ends_the_download_that_ran_in_the_first(phone, relay, xfer_procs, tmp_path):
    """A new link in the address mid-download: the download ends with the first room (no "Leave
    site?" for it, no percentage in the title, no card). Before: it stayed running for good."""
    big = make_file(tmp_path / "report.bin", 150 * MB, 14)
    sender = xfer_procs(["send", str(big), "--relay", relay.ws, "--json", "--no-qr", "--name", "laptop"], "send")
    recv, url2 = receiver(xfer_procs, relay, tmp_path, "--yes")
    open_room(phone, on_lan(sender.first_event()["url"]))
    phone.wait_for_selector(".offer button.primary")
    with phone.expect_download(timeout=bounded(30_000)):
        phone.click(".offer button.primary")
    wait_until(lambda: phone.evaluate("document.querySelector('.offer progress')?.value > 0"), 30, "progress")
    phone.evaluate("(h) => { location.hash = h; }", url2.split("#", 1)[1])
    ask = "() => { const e = new Event('beforeunload', { cancelable: true }); dispatchEvent(e); return e.defaultPrevented; }"
    wait_until(lambda: phone.title() == "xfer" and not phone.evaluate(ask), 5, "the first room's download ended")
    assert phone.locator(".offer").count() == 0
    assert sender.proc.poll() is None  # cut off mid-file, it waits for the page to come back


# -- 6. a reload mid-upload ------------------------------------------------------------------------


def test_a_reload_mid_upload_warns_and_then_says_how_to_resume(phone, relay, xfer_procs, tmp_path):
    """While a transfer runs the page asks before it goes (beforeunload); after a reload it lists
    what was cut off and says that picking the same files again resumes, which it does."""
    src = make_file(tmp_path / "clip.mp4", 60 * MB, 12)
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    ask = "() => { const e = new Event('beforeunload', { cancelable: true }); dispatchEvent(e); return e.defaultPrevented; }"
    assert phone.evaluate(ask) is False  # nothing to lose yet
    phone.set_input_files("#pick-files", [str(src)])
    wait_until(lambda: written(recv) >= 10 * MB, 60, "10 MB written", interval=0.01)
    assert phone.evaluate(ask) is True
    phone.reload()
    phone.wait_for_selector("#status[data-state=connected]")
    card = phone.locator(".cut-off")
    card.wait_for()
    assert "clip.mp4" in card.inner_text() and "Pick the same files again" in card.inner_text()
    shot(phone, "s6-reloaded")
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver again")
    phone.set_input_files("#pick-files", [str(src)])
    assert recv.wait(60) == 0, recv.stderr
    assert sha256_of(tmp_path / "in" / "clip.mp4") == sha256_of(src)
    accepted = events_of(recv, "accepted")
    assert len(accepted) == 2 and accepted[1]["resumed"] >= 10 * MB, accepted
    phone.wait_for_selector(".transfer-card .ok")
    assert phone.locator(".cut-off").count() == 0
    assert phone.evaluate(ask) is False


SPY_ON_WAKE_LOCK = """
if (navigator.wakeLock) {  // the real lock, watched: every sentinel the page gets is kept here
  const request = navigator.wakeLock.request.bind(navigator.wakeLock);
  window.__locks = [];
  navigator.wakeLock.request = async (type) => { const lock = await request(type); window.__locks.push(lock); return lock; };
}
"""


def test_the_screen_stays_on_while_a_transfer_runs(browser, playwright, relay, xfer_procs, tmp_path):
    """Where there is a Screen Wake Lock (a secure context: here http://127.0.0.1), the page holds
    one while it uploads and lets it go at the end."""
    src = make_file(tmp_path / "clip.mp4", 40 * MB, 13)
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    context = browser.new_context(**playwright.devices["Pixel 7"])
    context.add_init_script(SPY_ON_WAKE_LOCK)
    try:
        page = context.new_page()
        open_room(page, on_lan(url, host="127.0.0.1"))
        assert page.evaluate("window.isSecureContext && window.__locks.length") == 0
        wait_until(lambda: "desk" in page.inner_text("#peers"), 10, "the receiver")
        page.set_input_files("#pick-files", [str(src)])
        wait_until(lambda: written(recv) >= 5 * MB, 60, "5 MB written", interval=0.01)
        assert page.evaluate("window.__locks.filter((l) => !l.released).length") == 1
        assert recv.wait(60) == 0, recv.stderr
        page.wait_for_selector(".transfer-card .ok")
        wait_until(lambda: page.evaluate("window.__locks.every((l) => l.released)"), 5, "the lock let go")
    finally:
        context.close()
