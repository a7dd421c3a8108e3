"""What no space check before accepting can catch: a stream (no size) and a folder tree.

A stream stops at the receiver's margin of free space and leaves nothing behind (it can
never resume, so a partial of it would stay for ever); an offer's folders count toward a
limit of their own (``Limits.max_offer_folders``), and its files and folders toward the
file system's free inodes (less ``Limits.inode_margin``), checked before anything is written."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from conftest import free_port, make_file, run_async, serve, tmpfs
from peers import HostileSender, Room, listing
from xfer.errors import LocalFileError
from xfer.protocol import LIMITS, Reject


def test_a_stream_stops_at_the_margin_of_free_space_and_leaves_nothing(tmp_path, procs):
    disk = tmp_path / "small-disk"
    with tmpfs(disk, "size=40m"):
        stream = make_file(tmp_path / "stream.bin", 60 * 1000 * 1000, 5)  # more than the disk holds
        port = free_port()
        serve(procs, tmp_path, port)
        relay = f"127.0.0.1:{port}"
        receiver = procs(["receive", "--relay", relay, "--yes", "--json", "--dir", str(disk)], tmp_path, "recv")
        code = receiver.first_event()["code"]
        with open(stream, "rb") as stdin:
            sender = procs(["send", "-", "--room", code, "--relay", relay, "--json"], tmp_path, "send", stdin=stdin)
            assert receiver.wait(60) == 8, receiver.stderr
            assert sender.wait(30) == 8, sender.stderr
        error = [e for e in receiver.events() if e["event"] == "error"][-1]
        assert error["code"] == "disk-full" and "a stream cannot resume" in error["message"]
        assert [e for e in sender.events() if e["event"] == "error"][-1]["code"] == "disk-full"
        assert listing(disk) == []  # no partial, no state
        free = os.statvfs(disk)
        assert free.f_bavail * free.f_frsize >= LIMITS.space_margin - (1 << 20)  # it stopped short of the margin


DEEP = 64


def _deep_tree(entries: int, depth: int = DEEP) -> list[tuple[str, int]]:
    """``entries`` files, each at the bottom of its own chain of ``depth - 1`` folders."""
    return [("/".join([f"e{i}", *["d"] * (depth - 2), "f.txt"]), 1) for i in range(entries)]


def test_1000_entries_64_levels_deep_are_refused_before_anything_is_written(tmp_path):
    async def main():
        async with Room() as room:
            h = HostileSender(room)
            answer = await h.offer(_deep_tree(1000), tmp_path)
            return answer, await h.outcome()

    answer, result = run_async(main())
    assert isinstance(answer, Reject) and answer.code == "too-many-folders"
    assert isinstance(result, LocalFileError) and result.code == "too-many-folders"
    assert f"more than {LIMITS.max_offer_folders} folders" in str(result)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("folders, taken", [(10, True), (11, False)])
def test_the_folder_limit_is_a_keyword(tmp_path, folders, taken):
    """10 files in 10 folders of 1 (a flat tree) against a limit of 10, and one folder more."""
    tree = [(f"top/f{i}/x.txt", 1) for i in range(folders - 1)]

    async def main():
        async with Room() as room:
            h = HostileSender(room)
            return await h.offer(tree, tmp_path, limits=replace(LIMITS, max_offer_folders=10))

    answer = run_async(main())
    assert isinstance(answer, Reject) is not taken
    if not taken:
        assert answer.code == "too-many-folders" and listing(tmp_path) == []


def test_an_offer_of_more_entries_than_free_inodes_is_refused(tmp_path):
    disk = tmp_path / "few-inodes"
    with tmpfs(disk, "size=64m,nr_inodes=600"):

        async def main():
            async with Room() as room:
                h = HostileSender(room)
                answer = await h.offer(
                    [(f"f{i}.txt", 1) for i in range(1000)], disk, limits=replace(LIMITS, inode_margin=10)
                )
                return answer, await h.outcome()

        answer, result = run_async(main())
        assert isinstance(answer, Reject) and answer.code == "no-space"
        assert isinstance(result, LocalFileError) and "new files and folders" in str(result)
        assert listing(disk) == []
