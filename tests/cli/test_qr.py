"""The printed QR code really scans: characters back to pixels, decoded by zbarimg.

Polarity is part of what is tested: the image is drawn as a dark terminal shows
the text (block characters light, blanks and everything around dark), and
zbarimg does not look for inverted codes, so a code that only scans inverted fails.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from test_terminal import terminals  # noqa: F401  (the fixture)

from conftest import bounded, make_file
from xfer.cli.qr import qr_text

SCALE = 6  # pixels per module
MARGIN = 4  # character cells of terminal background around the code
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TOP = {"█", "▀"}
_BOTTOM = {"█", "▄"}

pytestmark = pytest.mark.skipif(shutil.which("zbarimg") is None, reason="zbarimg (zbar-tools) is not installed")


def render(text: str, path: Path, *, dark_terminal: bool = True) -> Path:
    """Draw the QR text as a terminal would: foreground where block halves are."""
    lines = [_ANSI.sub("", line) for line in text.splitlines() if line.strip("\n")]
    width = max(len(line) for line in lines) + 2 * MARGIN
    height = 2 * (len(lines) + 2 * MARGIN)
    fg, bg = (255, 0) if dark_terminal else (0, 255)
    grid = [[bg] * width for _ in range(height)]
    for row, line in enumerate(lines):
        for col, ch in enumerate(line):
            if ch in _TOP:
                grid[2 * (row + MARGIN)][col + MARGIN] = fg
            if ch in _BOTTOM:
                grid[2 * (row + MARGIN) + 1][col + MARGIN] = fg
    write_png(path, [[v for v in row for _ in range(SCALE)] for row in grid for _ in range(SCALE)])
    return path


def write_png(path: Path, rows: list[list[int]]) -> None:
    """An 8-bit greyscale PNG, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + bytes(row) for row in rows)
    header = struct.pack("!IIBBBBB", len(rows[0]), len(rows), 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def decode(path: Path) -> str | None:
    result = subprocess.run(["zbarimg", "--raw", "-q", str(path)], capture_output=True, text=True, timeout=bounded(20))
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.mark.parametrize(
    "url",
    [
        "http://192.168.1.20:8765/#7KQ2-M9XD-41TR-PZ8H",
        "http://10.0.0.5:41231/#0123-4567-89AB-CDEF",
        "https://relay.example.org/xfer/#7KQ2-M9XD-41TR-PZ8H",
        "http://[fd00::1234:5678]:65535/#7KQ2-M9XD-41TR-PZ8H-xx"[:60],
    ],
)
def test_qr_decodes_to_the_url(url, tmp_path):
    text = qr_text(url, colour=False)
    assert decode(render(text, tmp_path / "qr.png")) == url


def test_qr_fits_80_columns_for_60_character_urls():
    url = "http://192.168.100.200:65535/#7KQ2-M9XD-41TR-PZ8H-" + "x" * 20
    url = url[:60]
    assert len(url) == 60
    text = qr_text(url, colour=False)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert len(text.splitlines()) <= 30


def test_qr_in_colour_scans_on_a_light_terminal_too(tmp_path):
    """On a terminal the code carries its own white-on-black colours: the characters
    are the same, and the colours make a light terminal show what a dark one does."""
    url = "http://192.168.1.20:8765/#7KQ2-M9XD-41TR-PZ8H"
    coloured = qr_text(url, colour=True)
    assert "\x1b[38;5;255;48;5;232m" in coloured
    assert _ANSI.sub("", coloured) == qr_text(url, colour=False)
    assert decode(render(coloured, tmp_path / "qr.png")) == url
    # Without the colours, a light terminal would show it inverted, which zbar does not read.
    assert decode(render(qr_text(url, colour=False), tmp_path / "inverted.png", dark_terminal=False)) is None


def test_qr_printed_by_send_scans_to_its_page_url(tmp_path, procs):
    make_file(tmp_path / "a.bin", 1000)
    p = procs(["send", "a.bin", "--host", "127.0.0.1"], tmp_path, "send")
    deadline = time.monotonic() + bounded(15)
    while time.monotonic() < deadline and "▀" not in p.stderr.split("On a phone")[-1]:
        time.sleep(0.1)
    time.sleep(0.3)
    err = p.stderr
    url = re.search(r"open\s+(http://\S+)", err).group(1)
    block = [
        line for line in err.splitlines() if set(line.strip()) and set(line.strip()) <= {"█", "▀", "▄", "\xa0", " "}
    ]
    assert block, err
    assert decode(render("\n".join(block), tmp_path / "send.png")) == url
    p.stop()

    q = procs(["send", "a.bin", "--host", "127.0.0.1", "--no-qr"], tmp_path, "send-no-qr")
    deadline = time.monotonic() + bounded(15)
    while time.monotonic() < deadline and "On a phone" not in q.stderr:
        time.sleep(0.1)
    time.sleep(0.3)
    assert "On a phone" in q.stderr and "▀" not in q.stderr


def render_screen(text: str, path: Path, *, light: bool) -> Path:
    """Draw the text as a terminal shows it: cells after the QR's own colours (white on
    near-black, until a reset) in those, the others in the terminal's own (dark on light,
    or light on dark)."""
    own = (0, 255) if light else (255, 0)
    rows: list[list[tuple[str, tuple[int, int]]]] = []
    colours = own
    for line in text.splitlines():
        cells = []
        for piece in re.split(r"(\x1b\[[0-9;]*m)", line):
            if piece.startswith("\x1b["):
                if "48;5;232" in piece:
                    colours = (255, 8)
                elif piece in ("\x1b[0m", "\x1b[m", "\x1b[49m"):
                    colours = own
                continue
            cells += [(ch, colours) for ch in piece]
        if cells:
            rows.append(cells)
    width = max(len(r) for r in rows) + 2 * MARGIN
    grid = [[own[1]] * width for _ in range(2 * (len(rows) + 2 * MARGIN))]
    for row, cells in enumerate(rows):
        for col, (ch, (fg, bg)) in enumerate(cells):
            grid[2 * (row + MARGIN)][col + MARGIN] = fg if ch in _TOP else bg
            grid[2 * (row + MARGIN) + 1][col + MARGIN] = fg if ch in _BOTTOM else bg
    write_png(path, [[v for v in row for _ in range(SCALE)] for row in grid for _ in range(SCALE)])
    return path


def printed_qr(tmp_path: Path, procs, name: str, variables: dict[str, str]) -> tuple[str, str]:
    """The QR block and the page URL that ``xfer send`` printed on stderr (a file)."""
    make_file(tmp_path / "a.bin", 1000)
    p = procs(["send", "a.bin", "--host", "127.0.0.1"], tmp_path, name, env=variables)
    deadline = time.monotonic() + bounded(15)
    while time.monotonic() < deadline and "Waiting for a receiver" not in p.stderr:
        time.sleep(0.1)
    err = p.stderr
    p.stop()
    url = re.search(r"open\s+(http://\S+)", err).group(1)
    block = [line for line in err.splitlines() if "▀" in line or "▄" in line or set(_ANSI.sub("", line)) == {"█"}]
    return "\n".join(block), url


@pytest.mark.parametrize("no_color", ["", None])
def test_the_qr_printed_with_its_colours_scans_on_light_and_dark(no_color, tmp_path, procs):
    """NO_COLOR unset (or empty, which is not set): the QR brings its own colours, also
    into a pipe or file, where a terminal shows them later (`2>&1 | tee log`)."""
    variables = {"NO_COLOR": ""} if no_color is not None else {"NO_COLOR": "", "COLUMNS": "80"}
    block, url = printed_qr(tmp_path, procs, "send", variables)
    assert "48;5;232" in block
    assert decode(render_screen(block, tmp_path / "light.png", light=True)) == url
    assert decode(render_screen(block, tmp_path / "dark.png", light=False)) == url


def test_with_no_color_the_qr_has_no_escapes_and_scans_on_a_dark_terminal(tmp_path, procs):
    block, url = printed_qr(tmp_path, procs, "send", {"NO_COLOR": "1"})
    assert "\x1b" not in block
    assert decode(render_screen(block, tmp_path / "dark.png", light=False)) == url
    # On a light terminal, without colours it shows inverted: what zbar does not read
    # (phone cameras do); docs/cli.md says so.
    assert decode(render_screen(block, tmp_path / "light.png", light=True)) is None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_qr_on_a_real_terminal_scans_on_light_and_dark(tmp_path, terminals):
    from conftest import xfer_cmd

    make_file(tmp_path / "a.bin", 1000)
    variables = {"NO_COLOR": "-", "TERM": "xterm-256color"}
    sender = terminals("send", [*xfer_cmd(), "send", "a.bin", "--host", "127.0.0.1"], tmp_path, variables)
    sender.wait_for("Waiting for a receiver")
    url = re.search(r"open\s+(http://\S+)", sender.screen()).group(1)
    screen = sender.screen(escapes=True)
    block = "\n".join(x for x in screen.splitlines() if "▀" in x or "▄" in x or set(_ANSI.sub("", x)) == {"█"})
    assert decode(render_screen(block, tmp_path / "light.png", light=True)) == url
    assert decode(render_screen(block, tmp_path / "dark.png", light=False)) == url
