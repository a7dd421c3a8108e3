"""Names of 223 to 255 bytes (legal on Linux) arrive under that very name: the hidden
partial and state files beside them (``.NAME.KEY.xfer-part``, ``.xfer-state``,
``.xfer-state.tmp``) take only the name's first bytes, never more than NAME_MAX."""

from __future__ import annotations

import pytest

from conftest import make_file, sha256_of


@pytest.mark.parametrize(
    "name",
    [
        "a" * 251 + ".bin",  # 255 bytes
        "é" * 125 + "a.txt",  # 255 bytes, two per character
        "名" * 83 + "ab.txt",  # 255 bytes, three per character
        "x" * 223,  # where it began to fail
    ],
    ids=["ascii-255", "utf8-2-255", "utf8-3-255", "ascii-223"],
)
def test_a_name_of_up_to_255_bytes_arrives_as_itself(tmp_path, relay_process, procs, name):
    assert len(name.encode()) in (223, 255)
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = make_file(src_dir / name, 300_000, 3)
    relay = f"ws://127.0.0.1:{relay_process.port}"
    sender = procs(["send", str(src), "--relay", relay, "--json"], tmp_path, "send")
    code = sender.first_event()["code"]
    receiver = procs(["receive", code, "--relay", relay, "--yes", "--json", "--dir", "out"], tmp_path, "receive")
    assert receiver.wait(30) == 0, receiver.stderr
    assert sender.wait(30) == 0, sender.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == [name]
    assert sha256_of(tmp_path / "out" / name) == sha256_of(src)
