"""Hostile peer-supplied names: safe_name, display_name, partial_path, finalize.

Everything runs against the real filesystem in tmp_path. Each receiving test
uses the ``box`` fixture, which creates ``dl/`` (the receive folder) and
``outside/`` (things an attacker would like to reach) and, on teardown, checks
that nothing outside ``dl/`` changed.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from xfer.protocol import names as pure
from xfer.protocol.names import escape_hostile, recorded_relpath, safe_name
from xfer.transfer import names
from xfer.transfer.names import display_name, display_text, finalize, partial_path

SECRET = b"outside secret, must never change\n"


def _snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Type, content / link target and mtime of everything under root except skip."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for entry in dirnames + filenames:
            p = Path(dirpath, entry)
            if p == skip:
                continue
            st_ = os.lstat(p)
            if stat.S_ISLNK(st_.st_mode):
                detail = ("link", os.readlink(p))
            elif stat.S_ISREG(st_.st_mode):
                detail = ("file", p.read_bytes(), st_.st_mtime_ns)
            else:
                detail = ("other", stat.S_IFMT(st_.st_mode))
            out[str(p.relative_to(root))] = detail
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
    return out


class Box:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "dl"
        self.outside = root / "outside"
        self.folder.mkdir()
        self.outside.mkdir()
        self.secret = self.outside / "secret.txt"
        self.secret.write_bytes(SECRET)
        self._before = _snapshot(root, self.folder)
        self._parent_before = sorted(os.listdir(root.parent))

    def receive(
        self, raw: str, data: bytes = b"payload", *, overwrite: bool = False, transfer: int = 1, index: int = 0
    ) -> Path:
        name = safe_name(raw)
        part = partial_path(self.folder, name, f"{transfer:08x}{index}")
        assert part.parent == self.folder
        part.write_bytes(data)
        final = finalize(part, self.folder, name, overwrite=overwrite)
        assert final.parent == self.folder
        assert not os.path.lexists(part)
        assert stat.S_ISREG(os.lstat(final).st_mode)
        assert final.read_bytes() == data
        return final

    def listing(self) -> set[str]:
        return set(os.listdir(self.folder))

    def assert_outside_unchanged(self) -> None:
        assert _snapshot(self.root, self.folder) == self._before
        assert sorted(os.listdir(self.root.parent)) == self._parent_before
        assert self.secret.read_bytes() == SECRET


@pytest.fixture
def box(tmp_path: Path):
    b = Box(tmp_path)
    yield b
    b.assert_outside_unchanged()


HOSTILE = [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\Windows\\win.ini", "win.ini"),
    ("/etc/passwd", "passwd"),
    ("C:\\Windows\\x", "x"),
    ("C:evil.txt", "evil.txt"),
    ("\\\\server\\share\\x", "x"),
    ("dir/sub/", "sub"),
    ("a\x00b.txt", "ab.txt"),
    ("a\nb\rc\td\x01.txt", "abcd.txt"),
    ("\x1b[31mred.txt", "[31mred.txt"),
    ("\x1b]8;;http:\x07click\x1b]8;;\x07.txt", "]8;;http_click]8;;.txt"),
    ("\x9b31mcsi.txt", "31mcsi.txt"),
    ("\x7fdel.txt", "del.txt"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("LPT1", "_LPT1"),
    ("COM¹", "_COM¹"),
    ("nul .txt", "_nul .txt"),
    ("aux.tar.gz", "_aux.tar.gz"),
    ("CONSOLE.txt", "CONSOLE.txt"),
    ("report.txt. . .", "report.txt"),
    ("   lead.txt", "lead.txt"),
    ("harmless\u202etxt.exe", "harmlesstxt.exe"),
    ("a\u200db\u200bc\ufeff\u2066.txt", "abc.txt"),
    ("line\u2028sep", "linesep"),
    ('<>:"|?*.txt', "_______.txt"),
    ("file.txt:stream", "file.txt_stream"),
    ("", "file"),
    (".", "file"),
    ("..", "file"),
    ("...", "file"),
    ("/", "file"),
    ("\\", "file"),
    ("  ", "file"),
    ("\x00", "file"),
    ("C:", "file"),
    ("a/..", "file"),
    (".bashrc", ".bashrc"),
    ("e\u0301.txt", "\u00e9.txt"),
]


@pytest.mark.parametrize(("raw", "expected"), HOSTILE)
def test_safe_name_hostile(raw: str, expected: str) -> None:
    assert safe_name(raw) == expected
    assert safe_name(expected) == expected


@pytest.mark.parametrize(("raw", "expected"), HOSTILE)
def test_receive_hostile_lands_inside(box: Box, raw: str, expected: str) -> None:
    final = box.receive(raw)
    assert final == box.folder / expected
    assert box.listing() == {expected}
    box.assert_outside_unchanged()


def test_nfd_nfc_collision_gets_numbered(box: Box) -> None:
    nfd, nfc = "e\u0301.txt", "\u00e9.txt"
    assert safe_name(nfd) == safe_name(nfc) == nfc
    first = box.receive(nfd, b"one")
    second = box.receive(nfc, b"two", transfer=2)
    assert first.name == "\u00e9.txt"
    assert second.name == "\u00e9 (1).txt"
    assert unicodedata.is_normalized("NFC", second.name)
    assert first.read_bytes() == b"one"


@pytest.mark.parametrize(
    "raw",
    [
        "a" * 300 + ".txt",
        "é" * 300 + ".pdf",
        "😀" * 100,
        "x" * 300 + ".tar.gz",
        "." + "ü" * 300,
        "名" * 90 + "." + "x" * 200,
    ],
)
def test_very_long_names(box: Box, raw: str) -> None:
    name = safe_name(raw)
    assert 0 < len(name.encode()) <= 255
    for ext in (".txt", ".pdf", ".tar.gz"):
        if raw.endswith(ext):
            assert name.endswith(ext)
    part = partial_path(box.folder, name, "f" * 16)
    assert len(part.name.encode()) <= 255
    first = box.receive(raw, b"1")
    second = box.receive(raw, b"2", transfer=2)
    assert first.name == name
    assert second != first and len(second.name.encode()) <= 255
    assert " (1)" in second.name


def test_existing_regular_file_is_kept(box: Box) -> None:
    (box.folder / "x.txt").write_bytes(b"mine")
    final = box.receive("x.txt", b"theirs")
    assert final.name == "x (1).txt"
    assert (box.folder / "x.txt").read_bytes() == b"mine"
    assert box.receive("x.txt", b"again", transfer=2).name == "x (2).txt"


def test_numbering_keeps_compound_and_hidden_names(box: Box) -> None:
    assert [box.receive("archive.tar.gz", transfer=i).name for i in range(3)] == [
        "archive.tar.gz",
        "archive (1).tar.gz",
        "archive (2).tar.gz",
    ]
    assert [box.receive(".bashrc", transfer=i).name for i in range(2)] == [".bashrc", ".bashrc (1)"]
    assert [box.receive("photo.final.jpg", transfer=i).name for i in range(2)] == [
        "photo.final.jpg",
        "photo.final (1).jpg",
    ]


def test_existing_symlink_to_outside_is_not_followed(box: Box) -> None:
    link = box.folder / "x.txt"
    link.symlink_to(box.secret)
    final = box.receive("x.txt", b"evil")
    assert final.name == "x (1).txt"
    assert os.readlink(link) == str(box.secret)
    assert box.secret.read_bytes() == SECRET


def test_existing_dangling_symlink_is_not_followed(box: Box) -> None:
    link = box.folder / "x.txt"
    missing = box.outside / "planted.txt"
    link.symlink_to(missing)
    final = box.receive("x.txt", b"evil")
    assert final.name == "x (1).txt"
    assert not os.path.lexists(missing)
    assert os.readlink(link) == str(missing)


@pytest.mark.parametrize("overwrite", [False, True])
def test_existing_directory(box: Box, overwrite: bool) -> None:
    (box.folder / "x.txt").mkdir()
    (box.folder / "x.txt" / "inner").write_bytes(b"inner")
    final = box.receive("x.txt", b"data", overwrite=overwrite)
    assert final.name == "x (1).txt"
    assert (box.folder / "x.txt" / "inner").read_bytes() == b"inner"


@pytest.mark.parametrize("overwrite", [False, True])
def test_existing_fifo(box: Box, overwrite: bool) -> None:
    os.mkfifo(box.folder / "x.txt")
    final = box.receive("x.txt", b"data", overwrite=overwrite)
    assert final.name == "x (1).txt"
    assert stat.S_ISFIFO(os.lstat(box.folder / "x.txt").st_mode)


def test_overwrite_replaces_regular_file(box: Box) -> None:
    (box.folder / "x.txt").write_bytes(b"old")
    final = box.receive("x.txt", b"new", overwrite=True)
    assert final == box.folder / "x.txt"
    assert final.read_bytes() == b"new"
    assert box.listing() == {"x.txt"}


def test_overwrite_when_nothing_exists(box: Box) -> None:
    assert box.receive("x.txt", overwrite=True) == box.folder / "x.txt"


def test_overwrite_replaces_symlink_not_its_target(box: Box) -> None:
    link = box.folder / "x.txt"
    link.symlink_to(box.secret)
    final = box.receive("x.txt", b"new", overwrite=True)
    assert final == link
    assert not link.is_symlink()
    assert stat.S_ISREG(os.lstat(link).st_mode)
    assert link.read_bytes() == b"new"
    assert box.secret.read_bytes() == SECRET
    assert box.listing() == {"x.txt"}


def test_overwrite_replaces_symlink_to_outside_directory(box: Box) -> None:
    link = box.folder / "x.txt"
    link.symlink_to(box.outside, target_is_directory=True)
    final = box.receive("x.txt", b"new", overwrite=True)
    assert final == link and not link.is_symlink()
    assert sorted(os.listdir(box.outside)) == ["secret.txt"]


def test_overwrite_replaces_dangling_symlink(box: Box) -> None:
    link = box.folder / "x.txt"
    link.symlink_to(box.outside / "planted.txt")
    box.receive("x.txt", b"new", overwrite=True)
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert not os.path.lexists(box.outside / "planted.txt")


def test_numbering_is_bounded(box: Box) -> None:
    for n in ["x.txt"] + [f"x ({i}).txt" for i in range(1, 4)]:
        (box.folder / n).write_bytes(b"taken")
    part = partial_path(box.folder, "x.txt", "k1")
    part.write_bytes(b"data")
    with pytest.raises(FileExistsError):
        finalize(part, box.folder, "x.txt", overwrite=False, max_numbered=3)
    assert part.read_bytes() == b"data"


def test_fallback_without_hard_links(box: Box) -> None:
    """The reserve-then-rename path used where link() is unsupported."""
    (box.folder / "a.txt").write_bytes(b"mine")
    (box.folder / "a (1).txt").symlink_to(box.secret)
    (box.folder / "a (2).txt").symlink_to(box.outside / "planted")
    (box.folder / "a (3).txt").mkdir()
    part = partial_path(box.folder, "a.txt", "k1")
    part.write_bytes(b"data")
    final = names._place(part, box.folder, "a.txt", link=False)
    assert final == box.folder / "a (4).txt"
    assert final.read_bytes() == b"data"
    assert not os.path.lexists(part)
    assert (box.folder / "a.txt").read_bytes() == b"mine"
    assert os.readlink(box.folder / "a (1).txt") == str(box.secret)
    assert not os.path.lexists(box.outside / "planted")


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "..", ".", "", "../x", "a\x00"])
def test_finalize_rejects_unsafe_component(box: Box, bad: str) -> None:
    part = box.folder / ".p.xfer-part"
    part.write_bytes(b"x")
    with pytest.raises(ValueError):
        finalize(part, box.folder, bad, overwrite=True)
    with pytest.raises(ValueError):
        partial_path(box.folder, bad, "k1")
    assert part.exists()


def test_partial_path_format(tmp_path: Path) -> None:
    p = partial_path(tmp_path, "report.pdf", "0123456789abcdef")
    assert p == tmp_path / ".report.pdf.0123456789abcdef.xfer-part"
    long = partial_path(tmp_path, "é" * 127, "0123456789abcdef")
    assert len(long.name.encode()) <= 100  # room for the state file's longer suffixes, on any file system
    assert long.name.startswith(".é") and long.name.endswith(".0123456789abcdef.xfer-part")
    long.write_bytes(b"ok")  # the filesystem accepts it


# --- display_name -----------------------------------------------------------


def _render(markup: str) -> str:
    buf = io.StringIO()
    Console(file=buf, markup=True, emoji=True, highlight=False, color_system=None, width=10_000, soft_wrap=True).print(
        markup
    )
    return buf.getvalue().removesuffix("\n")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\x1b]8;;http://evil\x07click", "\\x1b]8;;http://evil\\x07click"),
        ("a\x00b\x7fc\x9bd", "a\\x00b\\x7fc\\x9bd"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("zw\u200bj\u200d", "zw\\u200bj\\u200d"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone\ud800", "lone\\ud800"),
        ("line\nbreak", "line\\x0abreak"),
        ("[bold]x[/bold]", "[bold]x[/bold]"),
        ("[link=http://evil]click[/link]", "[link=http://evil]click[/link]"),
        ("\\[bold]x", "\\[bold]x"),
        ("trailing\\", "trailing\\x5c"),
        ("two\\\\", "two\\\\x5c"),
        ("C:\\Users\\[red]", "C:\\Users\\[red]"),
        ("12:30:00 notes", "12:30:00 notes"),
        (":smile:", "\\x3asmile:"),
        ("café ✓", "café ✓"),
    ],
)
def test_display_name_escapes_and_prints_literally(raw: str, shown: str) -> None:
    assert _render(display_name(raw)) == shown
    assert _render(f"[bold]{display_name(raw)}[/bold] end") == shown + " end"


def test_display_text_keeps_line_breaks_and_escapes_the_rest() -> None:
    """A multi-line text prints line by line (indented under its sender's name); a bare
    carriage return, escapes and markup on any line are still shown, not obeyed."""
    raw = "shopping:\r\n- milk [bold]x[/bold]\n- \x1b[31mbread\rcheese"
    assert _render(display_text(raw)) == "shopping:\n  - milk [bold]x[/bold]\n  - \\x1b[31mbread\\x0dcheese"
    assert _render(display_text("one line")) == "one line"


def test_display_name_no_emoji_codes_survive() -> None:
    for raw in (":smile:heart:", "a:b:smile:", ":warning-emoji: x :+1:"):
        out = _render(display_name(raw))
        assert out.isascii(), out


def test_display_name_middle_ellipsis() -> None:
    out = display_name("a" * 100 + "b" * 1000 + "c" * 100, limit=51)
    assert len(out) <= 51 and "…" in out
    assert out.startswith("a" * 25) and out.endswith("c" * 25)
    assert display_name("short", limit=51) == "short"
    esc = display_name("\x1b" * 100, limit=21)
    head, tail = esc.split("…")
    assert head == "\\x1b" * (len(head) // 4) and tail == "\\x1b" * (len(tail) // 4)
    assert display_name("abc", limit=0) == "…"


def _hostile_char(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")


# --- properties ---------------------------------------------------------------

HOSTILE_ALPHABET = list('/\\.: <>"|?*CONconLPTcomPRNAUXnul19¹²³éeÅ') + [
    "\x00",
    "\x1b",
    "\x7f",
    "\x9b",
    "\u0301",
    "\u202e",
    "\u200d",
    "\ufeff",
    "\u2028",
    "\U000e0001",
    "\ud800",
    "名",
    "😀",
    "\u00a0",
]
any_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(HOSTILE_ALPHABET), max_size=60),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=80),
    st.text(alphabet=st.sampled_from(["a", "é", "名", "😀", ".", " ", "\u0301"]), min_size=60, max_size=400),
)


@settings(max_examples=500, deadline=None)
@given(any_text)
def test_safe_name_properties(raw: str) -> None:
    name = safe_name(raw)
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not any(_hostile_char(ch) for ch in name)
    assert not any(ch in '<>:"|?*' for ch in name)
    assert len(name.encode("utf-8")) <= 255
    assert unicodedata.is_normalized("NFC", name)
    assert not name.startswith(" ") and not name.endswith((" ", "."))
    assert name.split(".", 1)[0].rstrip(" ").upper() not in pure._RESERVED
    assert safe_name(name) == name
    numbered = pure._numbered(name, 10_000)
    assert len(numbered.encode()) <= 255 and safe_name(numbered) == numbered
    folder = tempfile.mkdtemp()
    try:  # the OS accepts both the final and the partial name
        for p in (Path(folder, name), partial_path(Path(folder), name, "f" * 16)):
            os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    finally:
        shutil.rmtree(folder)


@settings(max_examples=500, deadline=None)
@given(any_text, st.integers(min_value=-5, max_value=300))
def test_display_name_properties(raw: str, limit: int) -> None:
    out = display_name(raw, limit)
    assert not any(_hostile_char(ch) for ch in out)
    rendered = _render(out)
    assert not any(_hostile_char(ch) for ch in rendered)
    assert len(rendered) <= max(limit, 1)
    assert _render(f"[bold]{out}[/]|") == rendered + "|"
    plain = ":" not in raw and not raw.endswith("\\") and not any(map(_hostile_char, raw))
    if len(raw) <= limit and plain:
        assert rendered == raw


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from([":", "smile", "heart", "+1", "-emoji", "-text", " ", "x", "\\", "[bold]", "\x1b"]), max_size=30
    ),
    st.integers(min_value=1, max_value=40),
)
def test_display_name_never_renders_emoji_or_markup(parts: list[str], limit: int) -> None:
    """Whatever the colon pairing, before or after truncation, rich shows no emoji."""
    rendered = _render(f"[bold]{display_name(''.join(parts), limit)}[/bold]")
    assert all(ch.isascii() or ch == "…" for ch in rendered), rendered
    assert len(rendered) <= limit


def test_display_name_is_linear_on_huge_input() -> None:
    start = time.monotonic()
    for raw in (":smile:" * 50_000, ":" * 400_000, "\x1b[" * 100_000):
        out = display_name(raw, 100_000)
        assert len(out) <= 2 * 100_000  # markup escapes may add backslashes
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("raw", [".x.0123456789abcdef.xfer-part", ".x.0123456789abcdef.xfer-state"])
def test_names_cannot_pose_as_partial_files(raw):
    name = safe_name(raw)
    assert not name.endswith((".xfer-part", ".xfer-state"))
    assert safe_name(name) == name


@pytest.mark.parametrize(
    "raw",
    ["\x1b[2J", "\x9b\x85", "\u202egpj.exe\u2066", "\u200d\u2028\u2029", "\U000e0041\U0001d173", "\ud800x", "ok ✓"],
)
def test_escape_hostile_for_people_and_for_json(raw: str) -> None:
    """One escaping for every peer-written string: nothing hostile survives either spelling,
    and the JSON one (a surrogate pair above U+FFFF) decodes to exactly what the peer wrote."""
    import json

    for escaped in (escape_hostile(raw), escape_hostile(raw, json=True)):
        assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in escaped)
    assert json.loads('"' + escape_hostile(raw, json=True) + '"') == raw
    assert escape_hostile("\x1b\u202e\U000e0041") == "\\x1b\\u202e\\U000e0041"


@pytest.mark.parametrize(
    "raw, parts",
    [
        (".", []),
        ("photos", ["photos"]),
        ("photos (1)/2024", ["photos (1)", "2024"]),
        (".ssh", [".ssh"]),
        ("..", None),
        ("../x", None),
        ("a/../b", None),
        ("/etc", None),
        ("", None),
        ("a//b", None),
        ("a\\b", None),
        ("C:", None),
        ("a/\x1b", None),
        ("/".join(["d"] * 65), None),
        (None, None),
        (["a"], None),
    ],
)
def test_recorded_relpath_takes_only_what_safe_relpath_would_make(raw: object, parts: list[str] | None) -> None:
    assert recorded_relpath(raw) == parts
