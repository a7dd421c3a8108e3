"""xfer's own option coercion (``xfer.cli.coerce``) against typer's, and what it spares."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import bounded, free_port, make_file

VALUES = [
    "5",
    " 7 ",
    "1.0",
    "1.",
    "1.5",
    "0",
    "19",
    "20",
    "-1",
    "+3",
    "abc",
    "",
    "  ",
    "1_000",
    "1__0",
    "_1",
    "0x10",
    "1e3",
    "inf",
    "-inf",
    "nan",
    "0.5",
    ".5",
    "٣",
    "true",
    "no",
    "Yes",
    "OFF",
    "x/y",
    ".",
    "-",
    5,
    2.0,
    2.5,
    True,
    None,
    ("a", "b"),
    ["c"],
]


def test_every_option_coerces_as_typer_itself_does():
    """Same value or same message, for every parameter of every command, valid or not."""
    typer = pytest.importorskip("typer")
    core = pytest.importorskip("typer.core")
    if not hasattr(core, "build_runtime_param"):
        pytest.skip("this typer coerces with click; xfer leaves it alone")
    from typer._click.exceptions import BadParameter

    import xfer.cli.app  # noqa: F401 -- installs xfer's coercion
    from xfer.cli.app import app

    ours = core.build_runtime_param
    assert getattr(ours, "xfer_plain", False)
    typers = ours.typer_own

    def outcome(runtime, value, param):
        try:
            return "ok", runtime.coerce(value, param=param, ctx=None)
        except BadParameter as exc:
            return "error", exc.message

    compared = 0
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            mine, theirs = ours(param.type_descriptor), typers(param.type_descriptor)
            for value in VALUES:
                assert outcome(mine, value, param) == outcome(theirs, value, param), (name, param.name, value)
                compared += 1
    assert compared > 1000


def test_command_line_errors_read_as_before(tmp_path):
    core = pytest.importorskip("typer.core")
    if not hasattr(core, "build_runtime_param"):
        pytest.skip("this typer coerces with click, with its own messages; xfer leaves it alone")
    src = make_file(tmp_path / "a.txt", 10)
    result = subprocess.run(
        [sys.executable, "-m", "xfer", "send", str(src), "--receivers", "0"],
        capture_output=True,
        text=True,
        timeout=bounded(30),
    )
    assert result.returncode == 2
    assert "Invalid value for '--receivers' / '-n': Input should be greater than or equal to 1" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "xfer", "receive", "--port", "x8"], capture_output=True, text=True, timeout=bounded(30)
    )
    assert result.returncode == 2
    assert "Input should be a valid integer, unable to parse string as an integer" in result.stderr


def test_a_json_transfer_command_imports_neither_pydantic_nor_rich(tmp_path):
    """The 1 KiB fixed cost is mostly imports: pydantic (typer's coercion) and rich are not needed here."""
    src = make_file(tmp_path / "a.txt", 10)
    probe = (
        "import json, sys\n"
        "from xfer.cli import main\n"
        f"sys.argv = ['xfer', 'send', {str(src)!r}, '--relay', '127.0.0.1:{free_port()}', '--json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'rich'})]))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=bounded(30))
    code, heavy = json.loads(result.stdout.splitlines()[-1])
    assert code == 3  # the relay is not there; everything up to connecting ran
    # (a typer before 0.29 imports rich itself, whatever xfer does)
    typer_alone = "import json, sys, typer.main; print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", typer_alone], capture_output=True, text=True, timeout=bounded(30))
    assert heavy == sorted({"rich"} & set(json.loads(done.stdout)))


def test_the_installed_typer_is_inside_the_bound_and_gets_the_patch():
    """pyproject.toml bounds typer (scripts/check-typer-range runs these tests at both ends):
    the typer here is inside it, and a typer with the pydantic hook gets xfer's coercion."""
    import importlib.metadata
    import re
    from pathlib import Path

    from xfer.cli import coerce

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    spec = re.search(r'"(typer[^"]*)"', pyproject.read_text()).group(1)  # (tomllib: Python 3.11 on)
    low, high = re.fullmatch(r"typer>=([0-9.]+),<([0-9.]+)", spec).groups()

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"[0-9]+", text)[:3])

    installed = version(importlib.metadata.version("typer"))
    assert version(low) <= installed < version(high), (installed, spec)
    if installed >= (0, 29):
        assert coerce.install() is True
