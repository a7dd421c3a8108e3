"""Entries named with a leading dot, at any depth, are not written unless the person agreed
to them by name: ``xfer receive --yes`` in a home folder once saved a sender's ``.bash_login``,
``.gitconfig`` (``core.fsmonitor`` runs code) and ``.ssh/authorized_keys`` (croc's
CVE-2023-43619). ``--yes`` alone refuses such an offer, nothing written; ``--allow-dotfiles``
takes it; the question on a terminal lists them all (tests/cli/test_terminal.py)."""

from __future__ import annotations

from conftest import sha256_of
from peers import hostile_home


def _send(procs, tmp_path, relay_process):
    names = hostile_home(tmp_path)
    relay = f"ws://127.0.0.1:{relay_process.port}"
    sender = procs(["send", *names, "--relay", relay, "--json"], tmp_path / "src", "send")
    return sender, sender.first_event()["code"], relay


def test_yes_alone_refuses_an_offer_with_dotfiles_and_writes_nothing(tmp_path, relay_process, procs):
    sender, code, relay = _send(procs, tmp_path, relay_process)
    home = tmp_path / "home"
    receiver = procs(["receive", code, "--relay", relay, "--yes", "--json", "--dir", str(home)], tmp_path, "receive")
    assert receiver.wait(30) == 6, receiver.stderr
    assert sender.wait(30) != 0
    assert list(home.iterdir()) == []
    events = receiver.events()
    offer = next(e for e in events if e["event"] == "offer")
    assert offer["hidden"] == [".bash_login", ".gitconfig", ".ssh", ".ssh/authorized_keys"]
    error = events[-1]
    assert error["event"] == "error" and error["code"] == "hidden-entries" and error["exit"] == 6
    assert ".bash_login" in error["message"] and "--allow-dotfiles" in error["message"]


def test_allow_dotfiles_takes_them(tmp_path, relay_process, procs):
    sender, code, relay = _send(procs, tmp_path, relay_process)
    home = tmp_path / "home"
    args = ["receive", code, "--relay", relay, "--yes", "--allow-dotfiles", "--json", "--dir", str(home)]
    receiver = procs(args, tmp_path, "receive")
    assert receiver.wait(30) == 0, receiver.stderr
    assert sender.wait(30) == 0, sender.stderr
    for rel in (".bash_login", ".gitconfig", ".ssh/authorized_keys", "photo24.jpg"):
        assert sha256_of(home / rel) == sha256_of(tmp_path / "src" / rel)
