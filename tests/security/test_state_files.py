"""A state file that lies: anyone who can write in the target folder can plant a
``.xfer-state``, so nothing read from one is trusted more than what a peer sends. Its
``dest`` must be a path ``safe_relpath`` would make, through real folders; its
``done.path`` a file right there whose bytes have the SHA-256 it claims. Otherwise the
state and its partial are discarded and the file comes again from the start."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_async
from peers import HostileSender, Room, _sha, listing, next_of
from xfer.protocol import Accept, FileInfo, FileStart, Verified
from xfer.transfer import store


async def _receive(folder, name: str, data: bytes):
    """A sender of one file ``name``; returns the receiver's Accept and summary."""
    async with Room() as room:
        h = HostileSender(room)
        accept = await h.offer([(name, len(data))], folder)
        assert isinstance(accept, Accept)
        offset = accept.resume[0].offset if accept.resume else 0
        await h.conn.send(FileStart(to=h.to, transfer=h.transfer, index=0, offset=offset))
        if offset < len(data):
            await h.chunk(0, offset, data[offset:])
        await h.end(0, len(data), _sha(data))
        await next_of(h.conn, Verified)
        return accept, await h.outcome()


def _plant(folder, name: str, size: int, **state) -> store.Slot:
    parts = name.split("/")
    slot = store.slot_for(folder, FileInfo(name=name, size=size), parts)
    store.write_state(slot, **state)
    slot.partial.write_bytes(b"")
    return slot


@pytest.mark.parametrize(
    "dest", ["..", "../..", "/tmp", "photos/../..", ".", "photos\\..", "", "link", "other", "photos/deeper"]
)
def test_a_planted_dest_cannot_move_files_out_of_the_folder(tmp_path, dest):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", folder / "link")
    _plant(folder, "photos/a.jpg", 4, dest=dest)
    accept, summary = run_async(_receive(folder, "photos/a.jpg", b"good"))
    assert accept.resume == ()
    assert (folder / "photos" / "a.jpg").read_bytes() == b"good"
    assert summary["saved"][0]["path"] == str(folder / "photos" / "a.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "inbox"]
    assert listing(tmp_path / "elsewhere") == [] and listing(folder) == ["link", "photos"]


@pytest.mark.parametrize("where", ["outside", "other-file-inside", "wrong-bytes", "symlink", "not-a-sha"])
def test_a_planted_done_path_is_not_reported_as_received(tmp_path, where):
    folder = tmp_path / "inbox"
    folder.mkdir()
    good = b"good"
    target = {
        "outside": tmp_path / "x.bin",
        "other-file-inside": folder / "x.bin",
        "wrong-bytes": folder / "a.bin",
        "symlink": folder / "a.bin",
        "not-a-sha": folder / "a.bin",
    }[where]
    if where == "symlink":
        (tmp_path / "real.bin").write_bytes(good)
        os.symlink(tmp_path / "real.bin", target)
    else:
        target.write_bytes(b"evil" if where == "wrong-bytes" else good)
    sha = "not a sha" if where == "not-a-sha" else _sha(good)
    _plant(folder, "a.bin", 4, dest=".", done={"path": str(target), "sha256": sha})
    accept, summary = run_async(_receive(folder, "a.bin", good))
    assert accept.resume == ()
    saved = summary["saved"][0]["path"]
    assert saved != str(target) and os.path.dirname(saved) == str(folder)
    with open(saved, "rb") as f:
        assert f.read() == good
    assert not [p for p in listing(folder) if p.endswith((".xfer-state", ".xfer-part"))]


def test_a_true_state_still_resumes(tmp_path):
    """The checks take nothing from an honest state: a file placed by an interrupted run is known."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"good")
    slot = _plant(folder, "a.bin", 4, dest=".", done={"path": str(folder / "a.bin"), "sha256": _sha(b"good")})
    assert json.loads(slot.state.read_text())["done"]["path"] == str(folder / "a.bin")
    accept, summary = run_async(_receive(folder, "a.bin", b"good"))
    assert [p.offset for p in accept.resume] == [4]
    assert summary["saved"][0]["path"] == str(folder / "a.bin") and listing(folder) == ["a.bin"]
