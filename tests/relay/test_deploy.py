"""Deployment: TLS on ``xfer serve``, proxy headers only when trusted, the Procfile and the Dockerfile.

Every relay here is a real ``xfer serve`` on 127.0.0.1 with a throwaway CA made by
trustme; no key file is committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect

from conftest import bounded, free_port, make_file, run_async, sha256_of, wait_for_port, xfer_cmd
from xfer.protocol import PROTOCOL_VERSION, Error, Hello, Welcome, parse_message, serialize
from xfer.protocol.keys import parse_link_fragment

ROOT = Path(__file__).resolve().parents[2]


def xfer(*args, cwd, timeout=30, env=None):
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("XFER_RELAY", None)
    return subprocess.run(
        xfer_cmd() + list(args),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=bounded(timeout),
    )


def assert_one_clear_line(result, code, fragment):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xfer: "), result.stderr
    assert fragment in lines[0], result.stderr


def wait_for_line(proc, pattern: str, timeout: float = 10) -> re.Match:
    deadline = time.monotonic() + bounded(timeout)
    while time.monotonic() < deadline:
        found = re.search(pattern, proc.stderr)
        if found:
            return found
        if proc.proc.poll() is not None:
            raise AssertionError(f"exited {proc.proc.returncode}: {proc.stderr}")
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r}; stderr: {proc.stderr}")


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def tls(tmp_path, ca):
    """Certificate and key for 127.0.0.1 and the CA that signed them, as PEM files."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem", "ca": tmp_path / "ca.pem"}
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    cert.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    return paths


@pytest.fixture
def tls_relay(tmp_path, procs, tls):
    """``xfer serve --tls-cert --tls-key`` on a free loopback port; yields the process with ``.port``."""
    port = free_port()
    p = procs(
        [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--tls-cert",
            str(tls["cert"]),
            "--tls-key",
            str(tls["key"]),
        ],
        tmp_path,
        "serve",
    )
    wait_for_port(port)
    p.port = port
    return p


def test_send_and_receive_through_a_tls_relay(tmp_path, procs, tls, tls_relay):
    port = tls_relay.port
    # The printed command is the one that works: wss://, and the page on https://.
    line = wait_for_line(tls_relay, r"Others use it with: +xfer send FILE --relay (\S+)")
    assert line.group(1) == f"wss://127.0.0.1:{port}/ws"
    assert "(HTTPS and WSS)" in tls_relay.stderr

    src = tmp_path / "src"
    src.mkdir()
    files = [make_file(src / "photo.jpg", 3_000_000, 1), make_file(src / "notes.txt", 1234, 2)]
    out = tmp_path / "out"
    trust = {"SSL_CERT_FILE": str(tls["ca"])}  # the standard variable; websockets' default context reads it
    receiver = procs(
        ["receive", "--relay", f"wss://127.0.0.1:{port}", "--yes", "--json", "--dir", str(out)],
        tmp_path,
        "recv",
        env=trust,
    )
    room = receiver.first_event()
    assert room["relay"] == f"wss://127.0.0.1:{port}/ws"
    # the page's link: the nameplate of the code and a secret in the fragment, never the code's words
    page, _, fragment = room["url"].partition("#")
    assert page == f"https://127.0.0.1:{port}/"
    nameplate, secret = parse_link_fragment(fragment)
    assert str(nameplate) == room["code"].split("-")[0] and len(secret) == 32
    sender = procs(
        ["send", *map(str, files), "--room", room["code"], "--relay", room["relay"], "--json"],
        tmp_path,
        "send",
        env=trust,
    )
    assert sender.wait() == 0, sender.stderr
    assert receiver.wait() == 0, receiver.stderr
    for f in files:
        assert sha256_of(out / f.name) == sha256_of(f)

    # /healthz and the page over https, verified against the same CA.
    context = ssl.create_default_context(cafile=str(tls["ca"]))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=bounded(5)) as r:
        health = json.load(r)
    assert health["status"] == "ok" and {"version", "protocol", "rooms", "peers"} <= set(health)
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=context, timeout=bounded(5)) as r:
        assert r.status == 200
    # Plain HTTP on the TLS port gets nothing.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=bounded(5)).read()

    tls_relay.proc.send_signal(signal.SIGINT)
    assert tls_relay.wait(15) == 0 and "Traceback" not in tls_relay.stderr


def test_a_client_that_stalls_in_the_tls_handshake_is_closed(tls):
    """A TLS handshake gets the same time limit as the first HTTP request (asyncio's own is
    60 s): a client that sends the start of a ClientHello and then nothing is let go."""
    from xfer.relay import RelayLimits, RelayServer, bind_socket
    from xfer.relay.server import tls_context

    async def main():
        server = RelayServer(
            bind_socket("127.0.0.1", 0),
            limits=RelayLimits(handshake_timeout=0.5),
            tls=tls_context(str(tls["cert"]), str(tls["key"])),
        )
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x16\x03\x01")  # the first bytes of a ClientHello
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(100), bounded(5)) == b""  # closed by the relay
            assert time.monotonic() - started < bounded(3)
            writer.close()
            trusted = ssl.create_default_context(cafile=str(tls["ca"]))
            ws = await connect(f"wss://127.0.0.1:{server.port}/ws", ssl=trusted)  # a real client still gets in
            await ws.send(serialize(Hello(version=PROTOCOL_VERSION, room="", role="sender", name="a", create=True)))
            assert isinstance(parse_message(await asyncio.wait_for(ws.recv(), 5)), Welcome)
            await ws.close()
        finally:
            await server.stop()

    run_async(main())


def test_untrusted_or_missing_tls_is_one_clear_line(tmp_path, tls_relay, relay_process):
    src = make_file(tmp_path / "a.txt", 10)
    # Without SSL_CERT_FILE the throwaway CA is unknown: said so, with the way out.
    result = xfer("send", str(src), "--relay", f"wss://127.0.0.1:{tls_relay.port}", cwd=tmp_path)
    assert_one_clear_line(result, 3, "cannot trust relay")
    assert "SSL_CERT_FILE" in result.stderr
    # wss:// to a relay without TLS.
    result = xfer("send", str(src), "--relay", f"wss://127.0.0.1:{relay_process.port}", cwd=tmp_path)
    assert_one_clear_line(result, 3, "does not speak TLS there; try ws://")


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--tls-cert", "{cert}"], 2, "--tls-cert and --tls-key go together"),
        (["--tls-key", "{key}"], 2, "--tls-cert and --tls-key go together"),
        (["--tls-cert", "{tmp}/missing.pem", "--tls-key", "{key}"], 8, "cannot read --tls-cert"),
        (["--tls-cert", "{cert}", "--tls-key", "{tmp}/missing.pem"], 8, "cannot read --tls-key"),
        (["--tls-cert", "{tmp}", "--tls-key", "{key}"], 8, "cannot read --tls-cert"),  # a folder
        (["--tls-cert", "{garbage}", "--tls-key", "{key}"], 8, "holds no PEM certificate"),
        (["--tls-cert", "{cert}", "--tls-key", "{garbage}"], 8, "holds no PEM private key"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], 8, "is not the key of --tls-cert"),
        (["--tls-cert", "{cert}", "--tls-key", "{encrypted_key}"], 8, "is encrypted"),
        (["--trust-proxy", "nginx"], 2, "--trust-proxy 'nginx': give the proxy's IP address or network"),
        (["--trust-proxy", "127.0.0.1,10.0.0.0/33"], 2, "--trust-proxy '10.0.0.0/33'"),
        (["--trust-proxy", "*"], 2, "would let every client choose its own address"),
    ],
)
def test_serve_refuses_bad_tls_and_proxy_options(tmp_path, tls, ca, args, code, fragment):
    from cryptography.hazmat.primitives import serialization

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    other_key = tmp_path / "other.key"
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(other_key)
    key = serialization.load_pem_private_key(tls["key"].read_bytes(), None)
    encrypted_key = tmp_path / "encrypted.key"
    encrypted_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    names = {
        "cert": tls["cert"],
        "key": tls["key"],
        "tmp": tmp_path,
        "garbage": garbage,
        "other_key": other_key,
        "encrypted_key": encrypted_key,
    }
    port = free_port()
    result = xfer(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(a.format(**names) for a in args),
        cwd=tmp_path,
        timeout=15,
    )  # an encrypted key must not sit waiting for a passphrase
    assert_one_clear_line(result, code, fragment)


# Proxy headers: a relay with --joins-per-minute 1 lets each client address join once.
# Which address it counts shows whether X-Forwarded-For was believed.


async def join_as(port: int, forwarded_for: str) -> str:
    """Open a room with an X-Forwarded-For header; the relay's answer: "welcome" or an error code."""
    async with connect(
        f"ws://127.0.0.1:{port}/ws", additional_headers={"X-Forwarded-For": forwarded_for}, open_timeout=bounded(5)
    ) as ws:
        await ws.send(serialize(Hello(version=PROTOCOL_VERSION, room="", role="sender", name="p", create=True)))
        reply = parse_message(await asyncio.wait_for(ws.recv(), bounded(5)))
    assert isinstance(reply, (Welcome, Error)), reply
    return "welcome" if isinstance(reply, Welcome) else reply.code


@pytest.mark.parametrize(
    ("options", "env", "per_forwarded_address"),
    [
        (["--trust-proxy", "127.0.0.1"], {}, True),
        (["--trust-proxy", "10.0.0.0/8, 127.0.0.0/8"], {}, True),
        ([], {}, False),  # off by default, although uvicorn's own default believes 127.0.0.1
        ([], {"FORWARDED_ALLOW_IPS": "*"}, False),  # uvicorn's variable does not turn it on either
        (["--trust-proxy", "10.0.0.1"], {}, False),  # a trusted proxy, but not the one that connected
    ],
)
def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path, procs, options, env, per_forwarded_address):
    port = free_port()
    relay = procs(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--joins-per-minute", "1", *options],
        tmp_path,
        "serve",
        env=env,
    )
    wait_for_port(port)
    if "--trust-proxy" in options:
        wait_for_line(relay, r"X-Forwarded-For believed from ")
    else:
        wait_for_line(relay, r"Others use it with")
        assert "X-Forwarded-For" not in relay.stderr

    async def main():
        return [
            await join_as(port, "203.0.113.7"),
            await join_as(port, "198.51.100.9"),
            await join_as(port, "203.0.113.7"),
        ]

    replies = run_async(main())
    if per_forwarded_address:  # each forwarded address has its own join
        assert replies == ["welcome", "welcome", "rate-limited"]
    else:  # all three are 127.0.0.1, whatever the header says
        assert replies == ["welcome", "rate-limited", "rate-limited"]


def test_forwarded_for_entries_a_client_wrote_itself_do_not_count(tmp_path, procs):
    """Behind a proxy that appends (nginx's $proxy_add_x_forwarded_for), the last entry is the one it vouches for."""
    port = free_port()
    procs(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--joins-per-minute", "1", "--trust-proxy", "127.0.0.1"],
        tmp_path,
        "serve",
    )
    wait_for_port(port)

    async def main():
        return [await join_as(port, "203.0.113.7, 198.51.100.9"), await join_as(port, "192.0.2.1, 198.51.100.9")]

    assert run_async(main()) == ["welcome", "rate-limited"]  # both are 198.51.100.9, whatever they claimed first


# The deploy recipes at the repository root start commands that exist and serve.


def test_procfile_command_serves_on_port(tmp_path, procs):
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    kind, _, command = lines[0].partition(":")
    assert kind == "web"
    argv = shlex.split(command)
    assert argv[:2] == ["xfer", "serve"] and "$PORT" in argv
    port = free_port()
    argv = [str(port) if a == "$PORT" else a for a in argv]
    # As the platform would run it, kept on loopback here.
    relay = procs(argv[1:] + ["--host", "127.0.0.1"], tmp_path, "procfile")
    wait_for_port(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=bounded(5)) as r:
        assert json.load(r)["status"] == "ok"
    relay.proc.send_signal(signal.SIGTERM)
    assert relay.wait(15) == 0, relay.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_runs_xfer_serve_as_a_user_and_its_healthcheck_works(tmp_path, relay_process):
    instructions = dockerfile_instructions()
    keywords = [k for k, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert "EXPOSE" in keywords and "USER" in keywords
    user = [rest for k, rest in instructions if k == "USER"][-1]
    assert user not in ("root", "0")
    cmd = json.loads([rest for k, rest in instructions if k == "CMD"][-1])  # exec form, so SIGTERM reaches xfer
    assert cmd[:2] == ["xfer", "serve"]
    assert xfer(*cmd[1:], "--help", cwd=tmp_path).returncode == 0
    exposed = [rest for k, rest in instructions if k == "EXPOSE"][-1]
    env = " ".join(rest for k, rest in instructions if k == "ENV")
    assert f"PORT={exposed}" in env

    # The HEALTHCHECK command, run as the container's shell would: ok on a live relay, failing on a dead port.
    check = [rest for k, rest in instructions if k == "HEALTHCHECK"][-1]
    command = check[check.index("CMD ") + 4 :]
    assert "curl" not in command and "wget" not in command
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

    def health(port: int) -> int:
        return subprocess.run(
            ["/bin/sh", "-c", command], env={"PATH": path, "PORT": str(port)}, capture_output=True, timeout=bounded(15)
        ).returncode

    assert health(relay_process.port) == 0
    assert health(free_port()) != 0


def test_dockerfile_copies_enough_to_build(tmp_path):
    """What the Dockerfile COPYs is enough for `pip install .`: setuptools builds it offline there
    (an sdist through the PEP 517 hook: it reads pyproject.toml, README.md and the version from src)."""
    context = tmp_path / "context"
    context.mkdir()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                else:
                    shutil.copy(src, context / source)
    # setuptools only warns about a missing readme, so look for it here.
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert (context / readme).is_file()
    out = tmp_path / "dist"
    out.mkdir()
    build = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    result = subprocess.run(
        [sys.executable, "-c", build], cwd=context, capture_output=True, text=True, timeout=bounded(120)
    )
    assert result.returncode == 0, result.stderr
    with tarfile.open(out / result.stdout.split()[-1]) as sdist:
        names = sdist.getnames()
    assert any(n.endswith("src/xfer/cli/app.py") for n in names)
    assert any("src/xfer/web/" in n for n in names)


def test_serve_takes_a_limit_on_joins_to_rooms_that_are_not_open(tmp_path, procs):
    """``xfer serve --missed-joins-per-minute 2``: the third probe of a closed nameplate is
    refused as rate-limited, not answered "not open"."""
    port = free_port()
    procs(["serve", "--host", "127.0.0.1", "--port", str(port), "--missed-joins-per-minute", "2"], tmp_path, "serve")
    wait_for_port(port)

    async def probe(nameplate: str) -> str:
        async with connect(f"ws://127.0.0.1:{port}/ws", compression=None) as ws:
            hello = {"type": "hello", "version": "2.0", "room": nameplate, "role": "receiver", "name": ""}
            await ws.send(json.dumps(hello))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))["code"]

    async def main():
        return [await probe(str(n)) for n in (700, 701, 702)]

    assert run_async(main()) == ["room-not-found", "room-not-found", "rate-limited"]
