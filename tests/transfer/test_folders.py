"""Folders and pipes: trees keep their paths, empty folders and times; hostile trees stay inside."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from conftest import bounded, make_file, run_async, sha256_of, xfer_cmd
from peers import Events, HostileSender, Room, _sha, next_of, yes
from xfer.protocol import Verified
from xfer.transfer.receiver import Receiver
from xfer.transfer.sender import Sender, check_sources


def make_tree(root: Path) -> Path:
    (root / "photos" / "2024" / "summer").mkdir(parents=True)
    (root / "photos" / "empty").mkdir()
    (root / "photos" / "ünïcødé 写真").mkdir()
    make_file(root / "photos" / "2024" / "summer" / "beach.jpg", 3_000_000, 1)
    make_file(root / "photos" / "2024" / "zero.txt", 0)
    make_file(root / "photos" / "ünïcødé 写真" / "naïve café.png", 12_345, 2)
    make_file(root / "photos" / "top.txt", 10, 3)
    for i, path in enumerate(sorted((root / "photos").rglob("*"), reverse=True)):
        os.utime(path, (1_600_000_000 + i * 1000, 1_600_000_000 + i * 1000))
    os.utime(root / "photos", (1_500_000_000, 1_500_000_000))
    return root / "photos"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, content hash (files) and whole-second modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        kind = "dir" if path.is_dir() else "file"
        out[rel] = (kind, sha256_of(path) if kind == "file" else None, int(st.st_mtime))
    return out


def transfer(sources, folder, **receiver_options):
    async def main():
        async with Room() as room:
            s, r = await room.join("sender"), await room.join("receiver")
            sent, got = Events(), Events()
            await asyncio.gather(
                Sender(s, sources, sent).run(), Receiver(r, folder, got, yes, **receiver_options).run()
            )
            return sent, got

    return run_async(main())


def test_a_tree_arrives_whole(tmp_path):
    tree = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    sent, got = transfer(check_sources([tree]), out)
    assert snapshot(out / "photos") == snapshot(tree)
    assert os.stat(out / "photos").st_mtime == 1_500_000_000
    assert sorted(p.name for p in out.iterdir()) == ["photos"]  # no partial or state files left
    assert got.named("done")[0]["files"] == 4


def test_an_existing_folder_is_not_merged_unless_overwrite(tmp_path):
    tree = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    (out / "photos").mkdir(parents=True)
    (out / "photos" / "top.txt").write_text("mine")
    transfer(check_sources([tree]), out)
    assert (out / "photos" / "top.txt").read_text() == "mine"
    assert snapshot(out / "photos (1)") == snapshot(tree)
    transfer(check_sources([tree]), out, overwrite=True)
    assert sha256_of(out / "photos" / "top.txt") == sha256_of(tree / "top.txt")
    assert snapshot(out / "photos") == snapshot(tree)


def test_symlinks_in_the_source_are_skipped_with_a_warning(tmp_path):
    tree = make_tree(tmp_path / "src")
    secret = make_file(tmp_path / "secret.txt", 5)
    os.symlink(secret, tree / "link.txt")
    os.symlink(tree, tree / "loop")
    warnings = []
    names = [e.name for e in check_sources([tree], warn=warnings.append)]
    assert "photos/link.txt" not in names and not any(n.startswith("photos/loop") for n in names)
    assert len(warnings) == 2 and all("symlink" in w for w in warnings)
    followed = [e.name for e in check_sources([tree], follow_symlinks=True, warn=warnings.append)]
    assert "photos/link.txt" in followed
    assert any("loop" in w for w in warnings[2:])  # the loop is entered once, not for ever


HOSTILE_TREE = [
    ("../../outside.txt", "file"),
    ("/etc/cron.d/evil", "file"),
    ("C:\\Windows\\System32\\evil.dll", "file"),
    ("trap/../../../up.txt", "file"),
    ("planted/inside.txt", "file"),  # "planted" is a symlink to outside in the target folder
    ("same", "file"),
    ("same/child.txt", "file"),  # a file and a folder of the same name
    ("a/\x1b[2Jb/c.txt", "file"),
]


def test_hostile_tree_offers_stay_inside_the_folder(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, folder / "planted")

    async def main():
        async with Room() as room:
            h = HostileSender(room)
            await h.offer([(name, 3) for name, _ in HOSTILE_TREE], folder)
            for i in range(len(HOSTILE_TREE)):
                await h.start(i)
                await h.chunk(i, 0, b"bad")
                await h.end(i, 3, _sha(b"bad"))
                await next_of(h.conn, Verified)
            return await h.outcome()

    summary = run_async(main())
    assert summary["files"] == len(HOSTILE_TREE)
    assert list(outside.iterdir()) == []  # nothing through the planted symlink
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox", "outside"]
    for entry in summary["saved"]:
        path = Path(entry["path"])
        assert folder.resolve() in path.parents and path.read_bytes() == b"bad"
        assert not any(part.startswith("..") or "\x1b" in part for part in path.relative_to(folder.resolve()).parts)
    assert os.readlink(folder / "planted") == str(outside)


def run_shell(command: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("XFER_RELAY", None)
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=bounded(timeout),
    )


def test_folder_through_the_cli(tmp_path, relay_process):
    tree = make_tree(tmp_path / "src")
    make_file(tree / "2024" / "big.bin", 100_000_000, 9)
    relay = f"127.0.0.1:{relay_process.port}"
    xfer = " ".join(xfer_cmd())
    result = run_shell(
        f"{xfer} receive --relay {relay} --yes --json --dir out > recv.log 2> recv.err & receiver=$!; "
        f"for i in $(seq 100); do grep -q room recv.log 2>/dev/null && break; sleep 0.1; done; "
        f'code=$(python -c \'import json;print(json.loads(open("recv.log").readline())["code"])\'); '
        f"{xfer} send src/photos --room $code --relay {relay} && wait $receiver",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr + (tmp_path / "recv.err").read_text()
    assert snapshot(tmp_path / "out" / "photos") == snapshot(tree)
    assert "Sent 5 files" in result.stderr


def test_tar_through_a_pipe(tmp_path, relay_process):
    tree = make_tree(tmp_path / "src")
    relay = f"127.0.0.1:{relay_process.port}"
    xfer = " ".join(xfer_cmd())
    (tmp_path / "dst").mkdir()
    result = run_shell(
        f"({xfer} receive --relay {relay} --yes --stdout 2> recv.err | tar x -C dst) & receiver=$!; "
        f"for i in $(seq 100); do grep -q 'On another' recv.err 2>/dev/null && break; sleep 0.1; done; "
        f"code=$(grep -oE '[0-9]+(-[a-z]+){{2}}' recv.err | head -1); "
        f"tar c -C src photos | {xfer} send - --room $code --relay {relay} && wait $receiver",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr + (tmp_path / "recv.err").read_text()
    assert snapshot(tmp_path / "dst" / "photos") == snapshot(tree)
    assert "standard output" in (tmp_path / "recv.err").read_text()


def test_stdout_refuses_json_and_many_files(tmp_path):
    result = subprocess.run(
        xfer_cmd() + ["receive", "--stdout", "--json", "--yes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=bounded(30),
    )
    assert result.returncode == 2 and "pick one" in result.stdout
    sources = check_sources([make_file(tmp_path / "a", 1), make_file(tmp_path / "b", 1)])

    async def main():
        async with Room() as room:
            s, r = await room.join("sender"), await room.join("receiver")
            return await asyncio.gather(
                Sender(s, sources, Events()).run(),
                Receiver(r, tmp_path, Events(), yes, stdout=True).run(),
                return_exceptions=True,
            )

    sent, received = run_async(main())
    assert "one file or stream" in str(received) and "standard output" in str(sent)


def test_a_folder_transfer_resumes_into_the_same_folder(tmp_path):
    """A receiver stopped mid-tree and started again finishes in photos/, not photos (1)/."""
    tree = make_tree(tmp_path / "src")
    make_file(tree / "2024" / "big.bin", 8_000_000, 9)
    out = tmp_path / "out"
    out.mkdir()
    sources = check_sources([tree])

    async def main():
        async with Room() as room:
            s = await room.join("sender")
            first = await room.join("receiver")
            sender = asyncio.create_task(
                Sender(s, sources, Events(), window=1 << 20, rate=8_000_000, peer_timeout=20).run()
            )
            stopped = asyncio.create_task(Receiver(first, out, Events(), yes).run())
            while not any(
                p.name.startswith(".big.bin.") and p.name.endswith(".xfer-part") and p.stat().st_size > 1 << 20
                for p in out.iterdir()
            ):
                await asyncio.sleep(0.01)
            stopped.cancel()  # as if killed: partial and state files stay
            await first.close()
            again = await room.join("receiver")
            events = Events()
            summary = await Receiver(again, out, events, yes).run()
            await sender
            return events, summary

    events, summary = run_async(main(), timeout=60)
    assert events.named("accepted")[0]["resumed"] > 1 << 20
    assert sorted(p.name for p in out.iterdir()) == ["photos"]
    assert snapshot(out / "photos") == snapshot(tree)
