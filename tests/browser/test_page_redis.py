"""The phone page on one relay, ``xfer`` on another, the relays sharing rooms through Redis."""

from __future__ import annotations

import pytest
from pagekit import Relay, browser, on_lan, phone, playwright, shot, wait_until, xfer_procs  # noqa: F401

from conftest import RedisServer, make_file, sha256_of

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def two_relays(tmp_path):
    redis = RedisServer(tmp_path)
    redis.start()
    relays = [Relay(tmp_path, extra=("--redis", redis.url, "--redis-expiry", "2")) for _ in range(2)]
    yield relays
    for relay in relays:
        relay.stop()
    redis.stop()


def test_page_on_one_relay_uploads_and_talks_to_xfer_on_another(phone, two_relays, xfer_procs, tmp_path):
    page_relay, cli_relay = two_relays
    src = make_file(tmp_path / "clip.mp4", 12_000_000, 3)
    recv = xfer_procs(
        [
            "receive",
            "--relay",
            cli_relay.ws,
            "--yes",
            "--json",
            "--no-qr",
            "--dir",
            str(tmp_path / "in"),
            "--name",
            "desk",
        ],
        "recv",
    )
    room = recv.first_event()
    assert room["event"] == "room"
    phone.goto(page_relay.page(on_lan(room["url"]).split("#", 1)[1]))
    phone.wait_for_selector("#status[data-state=connected]")
    # a peer of the other relay, from the welcome; its name comes sealed, through Redis
    wait_until(lambda: "desk (xfer)" in phone.inner_text("#peers"), 10, "the receiver's sealed name")
    phone.fill("#text-input", "across relays")
    phone.click("#text-send")
    got = wait_until(lambda: [e for e in recv.events() if e["event"] == "text"], 10, "the text at xfer receive")
    assert got[0]["text"] == "across relays"
    phone.set_input_files("#pick-files", [str(src)])
    assert recv.wait(90) == 0, recv.stderr
    phone.wait_for_selector(".transfer-card .ok")
    shot(phone, "redis-upload-across-relays")
    assert sha256_of(tmp_path / "in" / "clip.mp4") == sha256_of(src)
    assert "SHA-256 verified" in phone.inner_text("#transfers")


def test_page_on_one_relay_downloads_from_xfer_on_another(phone, two_relays, xfer_procs, tmp_path):
    """``xfer send`` on relay B, the page on relay A: the page's download streams from A, whose
    bridge takes the chunks that come through Redis, and the sender hears ``verified``."""
    page_relay, cli_relay = two_relays
    files = [make_file(tmp_path / "report.bin", 6_000_000, 5), make_file(tmp_path / "notes.txt", 40_000, 6)]
    sender = xfer_procs(
        ["send", *map(str, files), "--relay", cli_relay.ws, "--json", "--no-qr", "--name", "laptop"], "send"
    )
    room = sender.first_event()
    downloads = []
    phone.on("download", lambda d: downloads.append(d))
    phone.goto(page_relay.page(room["url"].split("#", 1)[1]))
    phone.wait_for_selector(".offer button.primary")
    phone.click(".offer button.primary")
    wait_until(lambda: phone.wait_for_timeout(100) or len(downloads) == 2, 30, "two downloads")
    # the downloads and the sender's ``file-end`` events may come in either order (under load
    # the small file can finish first): each is matched by its name
    by_name = {d.suggested_filename: d for d in downloads}
    assert sorted(by_name) == sorted(f.name for f in files)
    for f in files:
        d, saved = by_name[f.name], tmp_path / f"got-{f.name}"
        d.save_as(saved)
        assert d.failure() is None and sha256_of(saved) == sha256_of(f)
    assert sender.wait(30) == 0, sender.stderr
    ends = [e for e in sender.events() if e["event"] == "file-end"]
    assert len(ends) == len(files)
    assert {e["name"]: e["sha256"] for e in ends} == {f.name: sha256_of(f) for f in files}
    phone.wait_for_selector(".offer .ok")
    shot(phone, "redis-download-across-relays")
