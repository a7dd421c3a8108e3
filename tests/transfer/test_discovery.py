"""Finding a built-in relay on the LAN by its nameplate (multicast DNS), across two
network namespaces joined by a veth pair: two machines on one Wi-Fi, on one machine.

The traffic stays inside the namespaces the test makes; they are deleted even when a
test fails. Without root (or iproute2) the tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import bounded

ANNOUNCE = """
import asyncio, sys
from xfer.discovery import Announcement, NameplateTaken
async def main():
    try:
        async with Announcement({nameplate}, 8765, ["{address}"]):
            print("announced", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    except NameplateTaken as exc:
        print("taken:", exc, flush=True)
asyncio.run(main())
"""

FIND = """
import asyncio, json
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf
from xfer.discovery import SERVICE, find, instance
async def main():
    found = await find({nameplate}, {timeout})
    zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(SERVICE, instance({nameplate}))
    raw = sorted(k.decode() for k in (info.properties or {{}})) if await info.async_request(zc.zeroconf, 1000) else None
    await zc.async_close()
    print(json.dumps({{"found": found and {{"addresses": found.addresses, "port": found.port,
                                            "urls": found.urls()}}, "txt": raw}}))
asyncio.run(main())
"""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=bounded(20))


@pytest.fixture
def lan():
    """Two namespaces, a at 10.231.7.1 and b at 10.231.7.2, on one veth link."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (`ip netns`)")
    tag = f"{os.getpid() % 100000}"
    a, b, va, vb = f"xfa{tag}", f"xfb{tag}", f"xva{tag}", f"xvb{tag}"
    try:
        run("ip", "netns", "add", a)
        run("ip", "netns", "add", b)
    except subprocess.CalledProcessError as exc:
        run("ip", "netns", "del", a, check=False)
        pytest.skip(f"cannot make network namespaces here: {exc.stderr.strip()}")
    try:
        run("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        run("ip", "link", "set", va, "netns", a)
        run("ip", "link", "set", vb, "netns", b)
        for ns, dev, address in ((a, va, "10.231.7.1/24"), (b, vb, "10.231.7.2/24")):
            run("ip", "-n", ns, "addr", "add", address, "dev", dev)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "route", "add", "default", "dev", dev)
        yield a, b
    finally:
        run("ip", "netns", "del", a, check=False)
        run("ip", "netns", "del", b, check=False)


def in_ns(ns: str, script: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def announce(ns: str, nameplate: int, address: str) -> tuple[subprocess.Popen[str], str]:
    proc = in_ns(ns, ANNOUNCE.format(nameplate=nameplate, address=address))
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def find_from(ns: str, nameplate: int, timeout: float = 3.0) -> dict:
    import json

    proc = in_ns(ns, FIND.format(nameplate=nameplate, timeout=timeout))
    out, err = proc.communicate(timeout=bounded(30))
    assert proc.returncode == 0, err
    return json.loads(out)


def stop(proc: subprocess.Popen[str]) -> None:
    try:
        proc.communicate("", timeout=bounded(10))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def test_a_receiver_finds_the_sender_by_nameplate_alone(lan):
    a, b = lan
    sender, said = announce(a, 7, "10.231.7.1")
    try:
        assert said == "announced"
        got = find_from(b, 7)
        assert got["found"] == {"addresses": ["10.231.7.1"], "port": 8765, "urls": ["ws://10.231.7.1:8765/ws"]}
        assert got["txt"] == ["nameplate", "v"]  # the nameplate and the version: never the words
        assert find_from(b, 8, timeout=1.0)["found"] is None  # another nameplate: nobody
    finally:
        stop(sender)


def test_two_relays_never_hold_one_nameplate(lan):
    a, b = lan
    first, said = announce(a, 7, "10.231.7.1")
    try:
        assert said == "announced"
        second, said = announce(b, 7, "10.231.7.2")
        stop(second)
        assert said.startswith("taken: nameplate 7")
    finally:
        stop(first)


def test_nothing_announced_means_nothing_found(lan):
    _, b = lan
    assert find_from(b, 7, timeout=1.0)["found"] is None


# -- the commands: `xfer send` announces, `xfer receive CODE` finds it ------------------


def xfer_in(ns: str, args: list[str], cwd, name: str) -> subprocess.Popen[str]:
    """``xfer ARGS`` in namespace ``ns``; stdout and stderr go to files in ``cwd``."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}
    env.pop("XFER_RELAY", None)
    env.pop("XFER_CODE", None)
    env["XFER_CONFIG"] = str(cwd / "no-config.json")  # no default relay from this machine's config
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "xfer", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=open(cwd / f"{name}.out", "w"),
        stderr=open(cwd / f"{name}.err", "w"),
        text=True,
        env=env,
    )


def test_xfer_receive_finds_the_sender_on_the_lan_by_its_code(lan, tmp_path):
    import hashlib
    import re
    import time

    a, b = lan
    src = tmp_path / "photo.jpg"
    src.write_bytes(os.urandom(200_000))
    sender = xfer_in(a, ["send", str(src), "--no-qr"], tmp_path, "send")
    try:
        deadline = time.monotonic() + bounded(20)
        said = ""
        while not (found := re.search(r"On another computer:\s+(.*)", said)) and time.monotonic() < deadline:
            time.sleep(0.1)
            said = (tmp_path / "send.err").read_text()
        assert found, said
        command = found.group(1).strip().split()
        # just the code: the receiver finds the relay on the LAN
        assert command[:2] == ["xfer", "receive"] and len(command) == 3, said
        code = command[2]
        assert re.fullmatch(r"[1-9][0-9]{0,2}-[a-z]+-[a-z]+", code)
        receiver = xfer_in(b, ["receive", code, "--yes", "--json", "--dir", str(tmp_path / "in")], tmp_path, "recv")
        assert receiver.wait(bounded(30)) == 0, (tmp_path / "recv.out").read_text()
        assert sender.wait(bounded(30)) == 0, (tmp_path / "send.err").read_text()
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    got = (tmp_path / "in" / "photo.jpg").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_xfer_receive_says_when_no_sender_has_the_code(lan, tmp_path):
    import json

    _, b = lan
    receiver = xfer_in(b, ["receive", "5-guitar-nebula", "--yes", "--json"], tmp_path, "recv")
    assert receiver.wait(bounded(30)) == 4
    error = json.loads((tmp_path / "recv.out").read_text().splitlines()[-1])
    assert error["code"] == "room-not-found"
    assert error["message"] == (
        "no sender with code 5-guitar-nebula found on this network; give --relay if it is elsewhere"
    )


def test_a_chosen_nameplate_that_the_lan_holds_is_refused(lan, tmp_path):
    """Two senders on two machines, the second given the first's nameplate with ``--code``:
    the LAN's probe refuses it, and it says so (a drawn nameplate would be drawn again)."""
    a, b = lan
    first = xfer_in(a, ["send", "--text", "hi", "--code", "9-guitar-nebula", "--no-qr", "--json"], tmp_path, "one")
    try:
        import time

        deadline = time.monotonic() + bounded(20)
        while "room" not in (tmp_path / "one.out").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert '"code":"9-guitar-nebula"' in (tmp_path / "one.out").read_text()
        second = xfer_in(b, ["send", "--text", "hi", "--code", "9-lubricant-kamikaze", "--json"], tmp_path, "two")
        assert second.wait(bounded(30)) == 4
        assert "nameplate 9 is already used by another xfer on this network" in (tmp_path / "two.out").read_text()
    finally:
        first.kill()
        first.wait()
